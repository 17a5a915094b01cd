"""Where snnlab keeps what it computes: the cache folder, a writability check, atomic writes.

Every file the library writes (npz caches, checkpoints, `snnlab compare`'s reports) goes through
`write_atomic`, so an interrupted write never leaves a half file in place of a good one, and every
long computation first checks (`check_writable`) that its result can be saved.

Used by data.py, train.py, train_snn.py and cli.py.
"""
import hashlib
import os
import tempfile
import time
from pathlib import Path

STALE_TEMP_SECONDS = 3600  # a temp file this old was left by a killed write (`write_atomic`)


def cache_dir() -> Path:
    """The folder for downloads, npz caches and checkpoints, created on demand.

    `$SNNLAB_CACHE` if set, else the repository's `data/` folder if it exists, else
    `~/.cache/snnlab`.
    """
    repo_data = Path(__file__).resolve().parent.parent / "data"
    if os.environ.get("SNNLAB_CACHE"):
        folder = Path(os.environ["SNNLAB_CACHE"])
    elif repo_data.is_dir():
        folder = repo_data
    else:
        folder = Path.home() / ".cache" / "snnlab"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sha256(path: Path) -> str:
    """The sha256 of the file at `path`, read in 1 MB blocks (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_writable(folder) -> Path:
    """Create `folder` if needed and check that a file can be written in it: call it before long work.

    Raises: OSError naming the folder and the fix (make it writable, or set SNNLAB_CACHE).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as err:
        raise OSError(f"cannot write to {folder} ({err.strerror or err}), so what is computed now could not be "
                      "saved: make it writable, or point SNNLAB_CACHE at a writable folder "
                      "(e.g. SNNLAB_CACHE=~/.cache/snnlab)") from err
    return folder


def write_atomic(path, write) -> None:
    """Write the file `path` whole or not at all: `write(f)` fills a temp file beside it, then it is renamed.

    A killed write leaves its temp file (`tmp*.tmp`); those older than `STALE_TEMP_SECONDS` in the
    folder are removed first (a write takes seconds).

    Args:
        path: the file to write. write: a function that writes the content to a binary file object.

    Raises: OSError naming `path` when it cannot be written (read-only folder, full disk).
    """
    path, tmp = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temp_files(path.parent)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=f"{path.suffix}.tmp", delete=False) as f:
            tmp = f.name
            write(f)
        os.replace(tmp, path)  # atomic: `path` is either the old file or the complete new one
    except OSError as err:
        raise OSError(f"could not write {path} ({err.strerror or err}): check that {path.parent} is writable "
                      "and has free space") from err
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def _remove_stale_temp_files(folder: Path) -> None:
    """Remove the temp files of `write_atomic` (`tmp*.tmp`) left in `folder` by writes killed long ago."""
    for leftover in folder.glob("tmp*.tmp"):
        try:
            if time.time() - leftover.stat().st_mtime > STALE_TEMP_SECONDS:
                leftover.unlink()
        except OSError:  # removed meanwhile, or not ours to remove
            pass
