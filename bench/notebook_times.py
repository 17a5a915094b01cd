"""Wall time of each notebook under nbval, cold (empty checkpoint cache) and warm (the cache it left).

    SNNLAB_DATA=/work/shared/data python bench/notebook_times.py            # normal knobs, all notebooks
    SNNLAB_DATA=/work/shared/data python bench/notebook_times.py --ci 04 05 # CI=true knobs, two notebooks

Each notebook gets its own empty `SNNLAB_CACHE`, so "cold" includes training every ANN/SNN it needs; the
same command then runs again on that cache ("warm"). Results: bench/results/notebook_times.json (and a
markdown line per notebook on stdout, the README's table).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"


def run(notebook: Path, cache: str, ci: bool) -> dict:
    """One `pytest --nbval-lax notebook` run: wall seconds, exit code, pytest's last line."""
    env = {**os.environ, "SNNLAB_CACHE": cache}
    env.pop("CI", None)
    if ci:
        env["CI"] = "true"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                           "--nbval-lax", str(notebook)], cwd=ROOT, env=env, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    return {"seconds": round(time.perf_counter() - start, 1), "returncode": done.returncode,
            "pytest": lines[-1] if lines else ""}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefixes", nargs="*", help="notebook number prefixes, e.g. 00 03 (default: all)")
    parser.add_argument("--ci", action="store_true", help="run with CI=true (the notebooks' short knobs)")
    parser.add_argument("--output", default=str(RESULTS / "notebook_times.json"))
    args = parser.parse_args(argv)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.prefixes:
        notebooks = [n for n in notebooks if n.name[:2] in args.prefixes]
    results = {"ci": args.ci, "cpu_cores": os.cpu_count(), "load_average_before": os.getloadavg(), "notebooks": {}}
    for notebook in notebooks:
        with tempfile.TemporaryDirectory(prefix="snnlab-cache-") as cache:
            cold, warm = run(notebook, cache, args.ci), run(notebook, cache, args.ci)
        results["notebooks"][notebook.stem] = {"cold": cold, "warm": warm}
        print(f"| {notebook.stem} | {cold['seconds']:.0f} | {warm['seconds']:.0f} | {cold['pytest']} |", flush=True)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
