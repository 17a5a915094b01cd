"""files.py: the cache folder, the writability check and atomic writes."""
import os
import time

import pytest

from snnlab import files


def test_cache_dir_follows_env(tmp_cache):
    assert files.cache_dir() == tmp_cache and tmp_cache.is_dir()


def test_write_atomic_keeps_the_old_file_when_a_write_fails(tmp_path):
    path = tmp_path / "out.json"
    files.write_atomic(path, lambda f: f.write(b"old"))

    def broken(f):
        f.write(b"half of the n")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        files.write_atomic(path, broken)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_write_atomic_names_the_file_it_could_not_write(tmp_path):
    def disk_full(f):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match=r"could not write .*net\.pt \(No space left on device\).*free space"):
        files.write_atomic(tmp_path / "net.pt", disk_full)
    assert list(tmp_path.iterdir()) == []  # no temp file left
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match=r"could not write .*file/net\.pt"):  # its folder cannot be created
        files.write_atomic(tmp_path / "file" / "net.pt", lambda f: f.write(b"x"))


def test_write_atomic_removes_temp_files_of_writes_killed_over_an_hour_ago(tmp_path):
    old, fresh, other = tmp_path / "tmpk1ll3d_x.pt.tmp", tmp_path / "tmpsav1ng_.pt.tmp", tmp_path / "notes.tmp"
    for path in (old, fresh, other):
        path.write_bytes(b"partial")
    hours_ago = time.time() - 2 * 3600
    for path in (old, other):
        os.utime(path, (hours_ago, hours_ago))
    files.write_atomic(tmp_path / "net.pt", lambda f: f.write(b"x"))
    assert not old.exists()  # a killed write's leftover
    assert fresh.exists() and other.exists()  # a write in progress elsewhere; a file that is not ours


def test_check_writable_names_the_folder_and_the_fix(tmp_path):
    assert files.check_writable(tmp_path / "new" / "sub") == tmp_path / "new" / "sub"
    assert (tmp_path / "new" / "sub").is_dir() and list((tmp_path / "new" / "sub").iterdir()) == []
    (tmp_path / "checkpoints").write_text("a file where the folder should be")
    with pytest.raises(OSError, match=r"cannot write to .*checkpoints .*SNNLAB_CACHE="):
        files.check_writable(tmp_path / "checkpoints")
