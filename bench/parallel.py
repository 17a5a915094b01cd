"""Benchmark: `snnlab train` in 1 process against 2 gloo processes (torchrun) on digits, and a killed rank resumed.

    python bench/parallel.py                 # ANN 10 epochs, then DIET-SNN 2 epochs at T = 4, seeds 0 and 1

For each seed it runs the same `snnlab train` command once as one process and once under
`torchrun --standalone --nproc_per_node=2` (gloo on CPUs) and reports the ANN's and the SNN's test
accuracy and the ANN's wall time per epoch (median; training only). Then it starts a 2-process run,
kills rank 1 with SIGKILL once the first epoch is checkpointed, re-runs the same command, and reports
the epochs the checkpoint held before and after, and whether the finished epochs were kept unchanged.
Results go to bench/results/parallel.json (and stdout). See README "Paper scale".
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ["-m", "snnlab", "train", "--dataset", "digits", "--model", "vgg-mini", "--no-progress", "--epochs", "10",
         "--snn", "diet", "--timesteps", "4", "--scale", "0.5", "--snn-epochs", "2"]
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def run(processes: int, seed: int, output: Path, env: dict) -> dict:
    command = [sys.executable] + (TORCHRUN if processes == 2 else []) + TRAIN + ["--seed", str(seed),
                                                                               "--output", str(output)]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    result = json.loads((output / "result.json").read_text())
    return {"processes": processes, "seed": seed, "ann_accuracy": result["ann_accuracy"],
            "snn_accuracy": result["snn"][-1]["accuracy"], "wall_s": time.perf_counter() - start,
            "ann_epoch_s": statistics.median(result["ann_epoch_seconds"]),
            "command": " ".join(["python"] + command[1:])}


def epochs_done(path: Path) -> list:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["meta"]["history"]["loss"]
    except Exception:  # not written yet
        return []


def rank_pid(parent: int, rank: int) -> int:
    """The pid of torchrun's worker of `rank` (a child of `parent`, RANK in its environment)."""
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent and f"RANK={rank}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                return int(proc.name)
        except (OSError, ValueError, IndexError):
            continue
    raise RuntimeError(f"no worker of rank {rank} under pid {parent}")


def kill_and_resume(output: Path, env: dict) -> dict:
    command = [sys.executable] + TORCHRUN + TRAIN + ["--output", str(output)]
    job = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not epochs_done(output / "ann.pt") and job.poll() is None:
        time.sleep(0.05)
    os.kill(rank_pid(job.pid, 1), signal.SIGKILL)
    job.wait()
    before = epochs_done(output / "ann.pt")
    subprocess.run(command, env=env, check=True, capture_output=True)
    after = epochs_done(output / "ann.pt")
    return {"exit_code_after_kill": job.returncode, "epochs_checkpointed_at_kill": len(before),
            "epochs_after_resume": len(after), "finished_epochs_kept": after[:len(before)] == before,
            "command": " ".join(["python"] + command[1:])}


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="snnlab-parallel-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SNNLAB_CACHE": str(folder / "cache")}
    rows = []
    for seed in (0, 1):
        for processes in (1, 2):
            rows.append(run(processes, seed, folder / f"p{processes}-s{seed}", env))
            print(json.dumps(rows[-1]), flush=True)
    resume = kill_and_resume(folder / "killed", env)
    print(json.dumps(resume), flush=True)
    result = {"rows": rows, "resume": resume, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
              "torch": torch.__version__}
    out = ROOT / "bench" / "results" / "parallel.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
