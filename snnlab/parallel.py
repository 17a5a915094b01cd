"""Devices and data parallelism: where tensors live, and training on N processes with torch.distributed.

One process trains as before. Started by `torchrun --nproc_per_node=N -m snnlab train ...`, every
process runs the same loop (train.py, train_snn.py) on its own shard of each batch:

    rank r of W sees the images i with i ≡ r (mod W) of a shared random order (DistributedSampler),
    B/W of them per step;  after `backward`, DistributedDataParallel averages the gradients,
    g = (1/W)·Σ_r g_r,  so every rank takes the same step, the one a single process takes on all B.

Only rank 0 writes checkpoints and shows progress bars; per-rank sums (loss, correct answers, images)
are added across ranks (`reduce_sums`) before a metric is computed. The backend is NCCL when the
processes use CUDA, else gloo (CPUs). It imports only data.py, so train.py and train_snn.py can use it.

Reference: PyTorch's DistributedDataParallel and torchrun documentation; README "Paper scale".
"""
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler

from .data import random_crop_flip


def default_device() -> torch.device:
    """CUDA (the current GPU) when one is available, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def resolve_device(device=None) -> torch.device:
    """`device` as a torch.device (None: `default_device()`); a bad or unusable name raises ValueError.

    Under torchrun each process takes its own GPU, cuda:LOCAL_RANK, when "cuda" is asked without an index.
    """
    if device is None:
        device = default_device()
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a device name: pass e.g. 'cpu', 'cuda' or 'cuda:1'") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} asked, but CUDA is not available here: pass device='cpu'")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return device


def model_device(model: nn.Module) -> torch.device:
    """The device of `model`'s first parameter (or buffer); the CPU for a model without either."""
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return torch.device("cpu") if tensor is None else tensor.device


# ---------------------------------------------------------------- processes
def is_distributed() -> bool:
    """True inside an initialized torch.distributed process group."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank (0 without torch.distributed)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """The number of processes (1 without torch.distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the process that writes files and shows progress: rank 0, or the only process."""
    return get_rank() == 0


def init_from_env(device: torch.device) -> bool:
    """Join the process group that torchrun describes (WORLD_SIZE, RANK, MASTER_ADDR in the environment).

    The backend is "nccl" for CUDA devices, else "gloo". Does nothing (returns False) when the
    process was not started by torchrun or the group exists already.
    """
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def finish() -> None:
    """Leave the process group (after the last collective call), if one was joined."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank gets here (nothing without torch.distributed)."""
    if is_distributed():
        dist.barrier()


def reduce_sums(*values: float) -> tuple:
    """Each value summed over all ranks: Σ_r value_r (the values themselves without torch.distributed)."""
    if not is_distributed():
        return values
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return tuple(total.tolist())


def distribute(model: nn.Module) -> nn.Module:
    """`model` wrapped in DistributedDataParallel inside a process group, else `model` itself.

    DDP copies rank 0's parameters and buffers to every rank when it is built and averages the
    gradients in `backward`; the optimizer, checkpoints and evaluation keep using `model`.
    """
    if not is_distributed():
        return model
    device = model_device(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def sync_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm's running statistics) to every rank, in place.

    DDP sends them at the start of each training forward, but each rank's last forward then updates
    its own: without this, ranks would evaluate (and could checkpoint) slightly different networks.
    """
    if is_distributed():
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


# ---------------------------------------------------------------- data
class ShardedLoader:
    """Rank r's share of a `data.TensorLoader`: B/W images per batch, the same number of batches on every rank.

    The order comes from torch's `DistributedSampler` (seeded, reshuffled each epoch by `set_epoch`);
    augmentation draws from a generator seeded by (seed, epoch, rank). Its whole state is the epoch
    (`state_dict`), so a checkpoint resumes it exactly. With CUDA the batches are pinned
    (page-locked) so that `.to(device, non_blocking=True)` overlaps the copy.

    Args:
        loader: a `data.TensorLoader` (x, y, batch_size, shuffle, padding, flip); its batch size is the global one.
        rank, world_size: this process and the number of processes (default: torch.distributed's).
        seed: of the order and the augmentation. pin_memory: None = when CUDA is available.

    Shapes: each batch is (x: [B/W, C, H, W], y: [B/W]).
    """

    def __init__(self, loader, *, rank: int | None = None, world_size: int | None = None, seed: int = 0,
                 pin_memory: bool | None = None):
        self.rank = get_rank() if rank is None else rank
        self.world_size = get_world_size() if world_size is None else world_size
        if loader.batch_size < self.world_size:
            raise ValueError(f"batch size {loader.batch_size} is smaller than the {self.world_size} processes: "
                             "pass a batch size of at least one image per process")
        self.x, self.y, self.padding, self.flip, self.seed = loader.x, loader.y, loader.padding, loader.flip, seed
        self.batch_size = loader.batch_size // self.world_size
        self.sampler = DistributedSampler(range(len(loader.x)), num_replicas=self.world_size, rank=self.rank,
                                          shuffle=loader.shuffle, seed=seed, drop_last=True)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.epoch = 0

    def __len__(self) -> int:
        return max(1, len(self.sampler) // self.batch_size)

    def __iter__(self):
        self.sampler.set_epoch(self.epoch)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 1009 + self.rank)
        order = torch.tensor(list(self.sampler))
        self.epoch += 1  # counted as the epoch starts: a checkpoint after it resumes at the next one
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            x, y = self.x[index], self.y[index]
            if self.padding or self.flip:
                x = random_crop_flip(x, self.padding, self.flip, generator)
            yield (x.pin_memory(), y.pin_memory()) if self.pin_memory else (x, y)

    def state_dict(self) -> dict:
        """What a checkpoint keeps of the loader: the next epoch."""
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
