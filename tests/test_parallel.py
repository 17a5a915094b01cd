"""tests for parallel.py: devices, the sharded loader, and 2-process gloo training on digits under torchrun."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from snnlab import cli, parallel
from snnlab.convert import convert
from snnlab.data import TensorLoader, get_loaders
from snnlab.models import build_model
from snnlab.simulate import Probe, evaluate_snn, simulate
from snnlab.train import evaluate, train_ann
from snnlab.train_snn import diet_init, train_snn

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "snnlab"]
TRAIN = ["train", "--dataset", "digits", "--model", "vgg-mini", "--no-progress", "--batch-size", "128"]


# ---------------------------------------------------------------- devices
def test_resolve_device_defaults_to_cuda_or_cpu_and_refuses_bad_names():
    assert parallel.resolve_device(None) == parallel.default_device()
    assert parallel.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a device name"):
        parallel.resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            parallel.resolve_device("cuda")


@pytest.mark.parametrize("command", [TRAIN, ["compare", "--dataset", "digits"], ["reproduce", "qcfs-vgg16-cifar10-t4"]])
def test_cli_refuses_a_bad_device(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(command + ["--device", "tpu9"])
    assert exit_info.value.code == 2
    assert "not a device name" in capsys.readouterr().err


@pytest.fixture
def moves(monkeypatch):
    """Record the target device of every `Tensor.to(device, ...)` call: [(shape, device)]."""
    calls, original = [], torch.Tensor.to

    def spy(self, *args, **kwargs):
        target = args[0] if args else kwargs.get("device")
        if isinstance(target, (str, torch.device)):
            calls.append((tuple(self.shape), torch.device(target)))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    return calls


def test_every_batch_is_moved_to_the_models_device(moves):
    """The pipeline never assumes CPU tensors: train, convert, simulate, evaluate move each batch `.to(device)`."""
    torch.manual_seed(0)
    x, y = torch.randn(24, 1, 8, 8), torch.arange(24) % 10
    loader = TensorLoader(x, y, batch_size=8, shuffle=True)
    ann = build_model("vgg-mini", num_classes=10, in_channels=1, image_size=8)
    cpu = torch.device("cpu")
    train_ann(ann, loader, epochs=1, lr=0.01, progress=False)
    evaluate(ann, TensorLoader(x, y, batch_size=8))
    snn = diet_init(ann.eval(), x, scale=1.0, timesteps=2)
    train_snn(snn, loader, timesteps=2, epochs=1, progress=False)
    evaluate_snn(snn, TensorLoader(x, y, batch_size=8), 2, progress=False)
    batches = [call for call in moves if call[0] == (8, 1, 8, 8)]
    # train_ann 3 + evaluate 3 + train_snn 3 + evaluate_snn 3 batches, each moved to the model's device
    assert len(batches) >= 12 and all(device == cpu for _, device in batches)
    label_moves = [call for call in moves if call[0] == (8,)]
    assert len(label_moves) >= 9


def test_convert_and_simulate_follow_the_models_device():
    torch.manual_seed(0)
    ann = build_model("vgg-mini", num_classes=10, in_channels=1, image_size=8).eval()
    x = torch.randn(16, 1, 8, 8)
    snn = convert(ann, x, threshold="max", timesteps=4, device="cpu")
    assert parallel.model_device(snn) == torch.device("cpu")
    with Probe(snn, device="cpu") as probe:
        out = simulate(snn, x, 4)
    assert out.device == torch.device("cpu") and out.shape == (4, 16, 10)
    assert all(counts.device == torch.device("cpu") for counts in probe.spikes.values())


# ---------------------------------------------------------------- the sharded loader
def test_sharded_loader_splits_each_batch_between_ranks_without_overlap():
    train, _ = get_loaders("digits", batch_size=128, augment=False)
    shards = [parallel.ShardedLoader(train, rank=r, world_size=2, seed=3, pin_memory=False) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(train)  # as many steps per epoch as one process
    indices = [list(shard.sampler) for shard in shards]
    assert not set(indices[0]) & set(indices[1])  # disjoint halves of one shuffled order
    assert len(set(indices[0]) | set(indices[1])) >= len(train.x) - 1
    first, second = ([y for _, y in shards[0]] for _ in range(2))
    assert all(len(y) == 64 for y in first)  # B/W images per step
    assert not torch.equal(torch.cat(first), torch.cat(second))  # a new order every epoch


def test_sharded_loader_resumes_at_its_epoch():
    train, _ = get_loaders("digits", batch_size=64)
    a = parallel.ShardedLoader(train, rank=1, world_size=2, seed=0, pin_memory=False)
    for _ in range(3):
        list(a)
    b = parallel.ShardedLoader(train, rank=1, world_size=2, seed=0, pin_memory=False)
    b.load_state_dict(a.state_dict())
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


# ---------------------------------------------------------------- torchrun, 2 processes on the CPU (gloo)
def _env(tmp_path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SNNLAB_CACHE": str(tmp_path / "cache")}


def _train(tmp_path, name: str, processes: int, epochs: int) -> dict:
    command = (TORCHRUN if processes == 2 else [sys.executable, "-m", "snnlab"]) + TRAIN + \
        ["--epochs", str(epochs), "--output", str(tmp_path / name)]
    done = subprocess.run(command, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp_path / name / "result.json").read_text())


def test_two_gloo_processes_reach_the_accuracy_of_one(tmp_path):
    one, two = _train(tmp_path, "one", 1, 6), _train(tmp_path, "two", 2, 6)
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert one["ann_accuracy"] > 85
    # 360 test images: the standard error of a difference of two ~95 % accuracies is ≈ 1.6 pt
    assert abs(two["ann_accuracy"] - one["ann_accuracy"]) <= 4.0


def _rank_pid(parent: int, rank: str) -> int | None:
    """The pid of the torchrun worker of `rank` (a child of `parent`), read from /proc."""
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if proc.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == parent and \
                f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def _epochs_done(path: Path) -> list:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["meta"]["history"]["loss"]
    except Exception:  # not written yet (the write is atomic: never half a file)
        return []


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_killing_a_rank_mid_epoch_and_resuming_loses_no_finished_epoch(tmp_path):
    epochs, run = 8, tmp_path / "killed"
    command = TORCHRUN + TRAIN + ["--epochs", str(epochs), "--output", str(run)]
    job = subprocess.Popen(command, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while len(_epochs_done(run / "ann.pt")) < 1 and time.time() < deadline and job.poll() is None:
        time.sleep(0.05)
    victim = _rank_pid(job.pid, "1")
    assert victim is not None, "rank 1 not found"
    os.kill(victim, signal.SIGKILL)
    job.communicate(timeout=300)
    assert job.returncode != 0  # torchrun stops the job when a rank dies
    before = _epochs_done(run / "ann.pt")
    assert 1 <= len(before) < epochs
    done = subprocess.run(command, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    after = _epochs_done(run / "ann.pt")
    assert len(after) == epochs and after[:len(before)] == before  # finished epochs kept, not re-run


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message printed without a GPU")
def test_gpu_benchmark_says_no_gpu_and_exits_0(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "simulate_gpu.py")], env=_env(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "no GPU is present" in done.stdout
