"""Benchmark: peak memory of a long simulation, in one pass and in chunks (`simulate(..., chunk=k)`).

    python bench/memory.py                        # 64 digits images: T = 64, T = 1024, T = 1024 in chunks of 64
    python bench/memory.py --chunk 16 --images 256

Each case runs in a fresh Python process (so that no case reuses memory another one freed): it loads the
digits ANN of `get_ann(dataset="digits", epochs=--epochs)` (trained once and cached, about a minute),
converts it (p99, V[0] = θ/2, 512 training images), then resets the process's peak resident memory
(Linux /proc/self/clear_refs) and runs `simulate` once on the first --images test images. It reports the
peak resident memory during `simulate` above the memory before it (`extra_mb`), the seconds, and a hash
of the output, so that the chunked and the one-pass T = 1024 runs can be checked to agree bitwise.
Results go to bench/results/memory.json (and stdout). See bench/README.md.
"""
import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from snnlab.convert import convert  # noqa: E402
from snnlab.data import get_loaders  # noqa: E402
from snnlab.simulate import simulate  # noqa: E402
from snnlab.train import get_ann  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    """The benchmark's options (see --help)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64, help="test images simulated at once (default: 64)")
    parser.add_argument("--timesteps", type=int, default=1024, help="the long T (default: 1024)")
    parser.add_argument("--short", type=int, default=64, help="the T of the one-pass reference (default: 64)")
    parser.add_argument("--chunk", type=int, default=64, help="steps per call in the chunked run (default: 64)")
    parser.add_argument("--epochs", type=int, default=10, help="of the digits ANN (default: 10)")
    parser.add_argument("--case", nargs=2, type=int, metavar=("T", "CHUNK"), help=argparse.SUPPRESS)  # child
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "memory.json"))
    return parser.parse_args(argv)


def _status_mb(key: str) -> float:
    """A memory line of /proc/self/status (VmRSS: now, VmHWM: peak since the last reset), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # kB → MB
    raise RuntimeError(f"/proc/self/status has no {key} line: this benchmark needs Linux")


def measure(args: argparse.Namespace, timesteps: int, chunk: int) -> dict:
    """Run one case in this process: the peak memory and seconds of one `simulate` call (chunk 0: one pass)."""
    ann, _ = get_ann(dataset="digits", epochs=args.epochs, progress=False)
    train_loader, test_loader = get_loaders("digits", batch_size=args.images, augment=False)
    snn = convert(ann, train_loader.x[:512], threshold="p99", v_init=0.5)
    x = test_loader.x[:args.images]
    before = _status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM ← VmRSS
    start = time.perf_counter()
    out = simulate(snn, x, timesteps, chunk=chunk or None)  # [T, B, classes]
    seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM")
    return {"timesteps": timesteps, "chunk": chunk or None, "images": len(x), "rss_before_mb": round(before, 1),
            "peak_mb": round(peak, 1), "extra_mb": round(peak - before, 1), "seconds": round(seconds, 2),
            "accuracy": (out[-1].argmax(-1) == test_loader.y[:args.images]).float().mean().item() * 100,
            "output_sha256": hashlib.sha256(out.numpy().tobytes()).hexdigest()}


def run_case(timesteps: int, chunk: int, argv: list) -> dict:
    """`measure` in a fresh Python process; its JSON line back."""
    done = subprocess.run([sys.executable, __file__, *argv, "--case", str(timesteps), str(chunk)],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.case:
        print(json.dumps(measure(args, *args.case)))
        return
    get_ann(dataset="digits", epochs=args.epochs, progress=False)  # train once here, not in every child
    cases = {f"T{args.short}": (args.short, 0), f"T{args.timesteps}": (args.timesteps, 0),
             f"T{args.timesteps}_chunk{args.chunk}": (args.timesteps, args.chunk)}
    runs = {name: run_case(*case, argv) for name, case in cases.items()}
    long, chunked = runs[f"T{args.timesteps}"], runs[f"T{args.timesteps}_chunk{args.chunk}"]
    result = {"summary": {name: run["extra_mb"] for name, run in runs.items()} | {
                  "chunked_equals_one_pass": long["output_sha256"] == chunked["output_sha256"]},
              "runs": runs, "config": {k: v for k, v in vars(args).items() if k != "case"},
              "machine": {"cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "torch": torch.__version__, "python": platform.python_version(),
                          "platform": platform.platform()}}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
