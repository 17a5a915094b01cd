"""Benchmark on a GPU: the converted SNN's time against T forward passes of its ANN, and SpikingJelly beside it.

    python bench/simulate_gpu.py                     # vgg-mini, CIFAR-10 (get_ann trains it on the GPU if needed)
    python bench/simulate_gpu.py --dataset digits    # a quick check of the script itself

The GPU variant of bench/simulate.py. For one batch on the GPU it times, median of several repeats
after warm-up, each run bracketed by torch.cuda.synchronize():
  ANN      the trained network in eval mode;
  snnlab   `simulate(convert(ann, images, threshold="max", v_init=0.0), x, T)`;
  SJ       SpikingJelly's `ann2snn` conversion of the same ANN in multi-step mode, on its fastest GPU backend:
           in SpikingJelly 2.x its own choice (native CUDA, else Triton, else torch; SJ_IF_CUDA_IMPLEMENTATION
           forces one), in older versions "cupy" when CuPy is installed, else "torch" (the result names it);
and reports ratio = t_SNN(T) / (T · t_ANN). Without a GPU it prints that none is present and exits 0.
Results go to bench/results/simulate_gpu.json (and stdout). See bench/README.md.
"""
import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from simulate import spikingjelly_simulate, spikingjelly_snns  # noqa: E402  (bench/simulate.py)

from snnlab.convert import convert  # noqa: E402
from snnlab.parallel import model_device  # noqa: E402
from snnlab.simulate import simulate  # noqa: E402
from snnlab.train import prepare  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "digits"))
    parser.add_argument("--model", default="vgg-mini")
    parser.add_argument("--epochs", type=int, default=None, help="of the get_ann checkpoint (default: get_ann's)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--timesteps", default="1,4,8,16", help="comma list of T")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--output", default=str(Path(__file__).resolve().parent / "results" / "simulate_gpu.json"))
    return parser.parse_args(argv)


@torch.no_grad()
def seconds(fn, warmup: int, repeats: int) -> float:
    """Median wall time of `fn()` on the GPU (synchronized before and after each run)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def spikingjelly_fastest(ann, images):
    """SpikingJelly's multi-step SNN on its fastest GPU backend: (net, backend name), or (None, why not).

    SpikingJelly 2.x picks the IF kernel itself: with SJ_IF_CUDA_IMPLEMENTATION unset ("auto") its native
    CUDA kernel, else Triton, else plain torch, the fastest it can load. Older versions (0.0.0.0.x) are
    told: "cupy" when CuPy is installed, else "torch".
    """
    try:
        from spikingjelly.activation_based import functional, neuron
    except ImportError as err:
        return None, f"spikingjelly not installed ({err})"
    net = spikingjelly_snns(copy.deepcopy(ann).cpu(), images.cpu())["multi"].to(model_device(ann))  # via the CPU
    if not hasattr(functional, "set_backend"):  # SpikingJelly 2.x
        return net, "auto: " + os.environ.get("SJ_IF_CUDA_IMPLEMENTATION", "native CUDA, else Triton, else torch")
    try:
        import cupy  # noqa: F401

        functional.set_backend(net, "cupy", instance=neuron.IFNode)
        return net, "cupy"
    except Exception:  # CuPy missing, or the backend refuses this node: the torch backend
        functional.set_backend(net, "torch", instance=neuron.IFNode)
        return net, "torch"


def main(argv=None) -> int:
    if not torch.cuda.is_available():
        print("bench/simulate_gpu.py: no GPU is present (torch.cuda.is_available() is False); nothing timed.")
        return 0
    args = parse_args(argv)
    steps = [int(t) for t in args.timesteps.split(",")]
    device = torch.device("cuda")
    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    ann, info, images, test_loader = prepare(dataset=args.dataset, model=args.model, batch_size=args.batch_size,
                                             device=device, **epochs)
    x = next(iter(test_loader))[0].to(device)
    snn = convert(ann, images, threshold="max", timesteps=max(steps), v_init=0.0)
    sj, backend = spikingjelly_fastest(ann, images)
    t_ann = seconds(lambda: ann(x), args.warmup, args.repeats)
    rows = []
    for t in steps:
        row = {"timesteps": t, "snnlab_ratio": seconds(lambda: simulate(snn, x, t), args.warmup, args.repeats)
               / (t * t_ann)}
        if sj is not None:
            row["spikingjelly_ratio"] = seconds(lambda: spikingjelly_simulate(sj, x, t, "m"), args.warmup,
                                                args.repeats) / (t * t_ann)
        rows.append(row)
        print(json.dumps(row))
    result = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "dataset": args.dataset,
              "model": args.model, "batch_size": len(x), "ann_ms": 1e3 * t_ann, "spikingjelly_backend": backend,
              "ann_accuracy": info["test_accuracy"], "rows": rows}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(f"ANN forward {1e3 * t_ann:.2f} ms on {result['gpu']}; SpikingJelly backend: {backend}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
