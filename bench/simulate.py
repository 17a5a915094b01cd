"""Benchmark: how much slower is the converted SNN than T forward passes of its ANN, and than SpikingJelly?

    python bench/simulate.py                      # vgg-mini, CIFAR-10 ReLU checkpoint of get_ann
    python bench/simulate.py --dataset digits     # a quick check of the script itself

For one batch (256 images, CPU, all cores) it times, median of several interleaved repeats after warm-up:
  ANN      the trained network in eval mode, BatchNorm unfolded (as trained), in the SNN's memory format;
  snnlab   `simulate(convert(ann, images, threshold="max", v_init=0.0), x, T)`: the default path
           (channels_last inside `simulate`), on the NCHW batch a user passes;
  snnlab_nchw  the same SNN run in NCHW (`snn(encode(x, T))`), for reference, against the ANN in NCHW;
  snnlab_compiled  the default path with each neuron step compiled by `torch.compile` (not the library's path);
  SJ       SpikingJelly 2.0's `ann2snn.Converter(RateCodingRecipe(mode="max"))` on the same calibration
           images, in both step modes: single-step ("s", its default: one call per step in a Python
           loop) and multi-step ("m", [T, B, ...] at once), `reset_net` before each batch;
and reports ratio = t_SNN(T) / (T · t_ANN) and the speed-up of snnlab over each SpikingJelly mode.
Both libraries run in one process with the same allocator setting (`--malloc`).
It also checks the two conversions against each other: test accuracy at every T, and the thresholds.
Results go to bench/results/simulate.json (and stdout). See bench/README.md.
"""
import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from snnlab import neurons as neurons_module  # noqa: E402
from snnlab.convert import convert  # noqa: E402
from snnlab.neurons import Neuron, TimeBatched, neurons, reset  # noqa: E402
from snnlab.simulate import encode, evaluate_snn, keep_freed_memory, simulate  # noqa: E402
from snnlab.train import prepare  # noqa: E402

SNNS = ("snnlab", "snnlab_nchw", "snnlab_compiled", "spikingjelly_single", "spikingjelly_multi")
STEP_MODES = {"single": "s", "multi": "m"}  # SpikingJelly's step modes; "s" is its default


def parse_args(argv=None) -> argparse.Namespace:
    """The benchmark's options (see --help)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "digits"))
    parser.add_argument("--epochs", type=int, default=None, help="of the get_ann checkpoint (default: get_ann's)")
    parser.add_argument("--train-size", type=int, default=None, help="of the get_ann checkpoint (default: all)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--timesteps", default="1,4,8,16", help="comma list of T")
    parser.add_argument("--agreement-timesteps", type=int, default=64,
                        help="T of the accuracy comparison with SpikingJelly (max-norm needs long T on CIFAR)")
    parser.add_argument("--calibration", type=int, default=1000, help="training images to calibrate θ")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-spikingjelly", action="store_true", help="time snnlab only")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variant")
    parser.add_argument("--malloc", choices=("keep", "glibc"), default="keep",
                        help="keep (snnlab's default): glibc keeps freed memory (snnlab.simulate.keep_freed_memory); "
                             "glibc: glibc's own defaults (SNNLAB_KEEP_FREED_MEMORY=0). Applies to both libraries")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "simulate.json"))
    return parser.parse_args(argv)


def machine_info(threads: int) -> dict:
    """Cores, threads, versions and load: what the timings depend on."""
    info = {"cpu_cores": os.cpu_count(), "torch_threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "load_average_before": os.getloadavg()}
    try:
        import spikingjelly
        info["spikingjelly"] = getattr(spikingjelly, "__version__", "2.x")
    except ImportError:
        info["spikingjelly"] = None
    return info


# ---------------------------------------------------------------- the two conversions
def spikingjelly_snns(ann: nn.Module, images: torch.Tensor) -> dict:
    """SpikingJelly's max-norm conversion of `ann`, calibrated on `images` given as ONE batch, in both
    step modes: {"single": step mode "s" (SpikingJelly's default), "multi": step mode "m"}.

    VoltageHook keeps an exponential moving average (momentum 0.1) of each batch's maximum; with a
    single batch it is the exact maximum, the same θ as snnlab's "max" recipe.
    """
    from spikingjelly.activation_based import ann2snn, functional

    recipe = ann2snn.RateCodingRecipe(dataloader=[images], mode="max")
    snn = ann2snn.Converter(recipe=recipe).convert(ann).eval()
    snns = {"single": copy.deepcopy(snn), "multi": snn}
    for name, net in snns.items():
        functional.set_step_mode(net, STEP_MODES[name])
    return snns


@torch.no_grad()
def spikingjelly_simulate(snn: nn.Module, x: torch.Tensor, timesteps: int, step_mode: str) -> torch.Tensor:
    """The same read-out as `snnlab.simulate`: out[t] = mean of the outputs of steps 1..t, [T, B, classes].

    step_mode "s": one call per step on [B, ...] (SpikingJelly's default); "m": one call on [T, B, ...].
    """
    from spikingjelly.activation_based import functional

    functional.reset_net(snn)
    if step_mode == "s":
        y = torch.stack([snn(x) for _ in range(timesteps)])  # [T, B, classes]
    else:
        y = snn(x.unsqueeze(0).repeat(timesteps, *[1] * x.dim()))  # [T, B, classes]
    steps = torch.arange(1, timesteps + 1, dtype=y.dtype, device=y.device).view(-1, 1, 1)
    return y.cumsum(0) / steps


def spikingjelly_accuracy(snn: nn.Module, loader, timesteps: int) -> torch.Tensor:
    """Accuracy (%) after each step t = 1..T of SpikingJelly's multi-step SNN over `loader`, [T]."""
    correct, total = torch.zeros(timesteps), 0
    for x, labels in loader:
        out = spikingjelly_simulate(snn, x, timesteps, "m")  # [T, B, classes]
        correct += (out.argmax(-1) == labels).sum(1).float()
        total += len(labels)
    return 100 * correct / total


def spikingjelly_thresholds(snn: nn.Module) -> list:
    """θ of each layer of SpikingJelly's SNN: the scale of the VoltageScaler after each IF node."""
    return [m.scale.item() for name, m in snn.named_modules() if name.endswith("scaler1")]


def agreement(snn, sj_snn, test_loader, t_max: int) -> dict:
    """Test accuracy of both max-norm conversions at every t ≤ T_max, and their thresholds."""
    ours = evaluate_snn(snn, test_loader, t_max, progress=False)
    theirs = spikingjelly_accuracy(sj_snn, test_loader, t_max)
    ours_th = [m.threshold.item() for m in neurons(snn).values()]
    theirs_th = spikingjelly_thresholds(sj_snn)
    return {"timesteps": list(range(1, t_max + 1)), "snnlab_accuracy": ours.tolist(),
            "spikingjelly_accuracy": theirs.tolist(), "max_abs_difference_pt": (ours - theirs).abs().max().item(),
            "snnlab_thresholds": ours_th, "spikingjelly_thresholds": theirs_th,
            "max_relative_threshold_difference": max(abs(a - b) / a for a, b in zip(ours_th, theirs_th))}


# ---------------------------------------------------------------- snnlab's variants
@torch.no_grad()
def simulate_nchw(snn: nn.Module, x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """`simulate` in the NCHW memory format (the SNN's and x's own), for reference: out [T, B, classes]."""
    reset(snn)
    y = snn(encode(x, timesteps))  # [T, B, classes]
    return y.cumsum(0) / torch.arange(1, timesteps + 1, dtype=y.dtype).view(-1, 1, 1)


def _soft_reset_step(x_t, v, y_t, threshold, leak, value) -> None:
    """One step of `if_step` (soft reset) written for torch.compile to fuse into one pass over memory."""
    h = leak * v + x_t  # H[t]
    spike = (h >= threshold).to(h.dtype)  # S[t]
    v.copy_(h - threshold * spike)  # V[t], in place
    y_t.copy_(value * spike)  # Y[t] = A·S[t]


def compiled_scan():
    """A replacement for `snnlab.neurons._scan_fast` that runs each step as one compiled kernel.

    Compiled once with dynamic shapes, for every layer and T. λ·V + X may be fused into one
    multiply-add, so only IF neurons (λ = 1) keep exactly the library's spikes; `main` checks them.
    """
    step = torch.compile(_soft_reset_step, dynamic=True)

    def scan(x, v, threshold, leak, reset_mode, value):
        if reset_mode != "soft":
            raise ValueError(f"the compiled scan covers soft reset only, got {reset_mode!r}")
        out, v = torch.empty_like(x), torch.empty_like(x[0]).copy_(v)  # [T, B, ...], [B, ...]
        for t in range(x.shape[0]):
            step(x[t], v, out[t], threshold, leak, value)
        return out, v

    return scan


def with_scan(scan, fn):
    """Call `fn()` with `scan` in place of the library's fast neuron scan."""
    library_scan, neurons_module._scan_fast = neurons_module._scan_fast, scan
    try:
        return fn()
    finally:
        neurons_module._scan_fast = library_scan


def check_compiled(snn, x, timesteps: int, scan) -> dict:
    """Seconds of the first call (compilation included) and of the next; whether the outputs are exact."""
    first, _ = _seconds(lambda: with_scan(scan, lambda: simulate(snn, x, timesteps)))
    again, _ = _seconds(lambda: with_scan(scan, lambda: simulate(snn, x, timesteps)))
    exact = torch.equal(with_scan(scan, lambda: simulate(snn, x, timesteps)), simulate(snn, x, timesteps))
    return {"timesteps": timesteps, "first_call_s": first, "second_call_s": again, "exact_outputs": exact}


# ---------------------------------------------------------------- timing
def _seconds(fn) -> tuple:
    """(wall, CPU) seconds of one call of `fn`; CPU time is the process's, summed over its threads."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def time_against_ann(cases: dict, warmup: int, repeats: int) -> dict:
    """Seconds of each case {name: (snn_fn, ann_fn)}, each SNN call paired with an ANN call timed just
    before it, over `repeats` rounds.

    Pairing matters on a shared machine: a change of load during the run then hits both sides of the
    ratio alike. Returns {case: {"wall": [(snn, ann), ...], "cpu": [(snn, ann), ...]}}.
    """
    for snn_fn, ann_fn in cases.values():
        for _ in range(warmup):
            ann_fn(), snn_fn()
    runs = {name: {"wall": [], "cpu": []} for name in cases}
    for _ in range(repeats):
        for name, (snn_fn, ann_fn) in cases.items():
            ann, snn = _seconds(ann_fn), _seconds(snn_fn)
            runs[name]["wall"].append((snn[0], ann[0]))
            runs[name]["cpu"].append((snn[1], ann[1]))
    return runs


def timing_cases(snn, sj_snns, anns: dict, x, timesteps: list, scan) -> dict:
    """The SNN runs to time, by name "<SNN>_T<T>" (see SNNS), each with the ANN pass it is paired with.

    The default path, its compiled variant and SpikingJelly are paired with the ANN in channels_last
    (the SNN's format in `simulate`), so their ratios share one baseline; snnlab_nchw with the NCHW ANN.
    """
    x_last = x.contiguous(memory_format=torch.channels_last)
    ann_last = torch.no_grad()(lambda: anns["channels_last"](x_last))
    ann_nchw = torch.no_grad()(lambda: anns["nchw"](x))
    cases = {}
    for t in timesteps:
        cases[f"snnlab_T{t}"] = (lambda t=t: simulate(snn, x, t), ann_last)
        cases[f"snnlab_nchw_T{t}"] = (lambda t=t: simulate_nchw(snn, x, t), ann_nchw)
        if scan is not None:
            cases[f"snnlab_compiled_T{t}"] = (lambda t=t: with_scan(scan, lambda: simulate(snn, x, t)), ann_last)
        for mode, net in sj_snns.items():
            cases[f"spikingjelly_{mode}_T{t}"] = (lambda t=t, net=net, mode=mode:
                                                  spikingjelly_simulate(net, x, t, STEP_MODES[mode]), ann_last)
    return cases


def summarize_runs(runs: dict) -> dict:
    """Per case: ratio = t_SNN / (T · t_ANN), the median over rounds of each round's pair, from wall time
    and from CPU time (less sensitive to other processes), and the median seconds of both."""
    out = {}
    for name, run in runs.items():
        steps = int(name.rsplit("_T", 1)[1])
        out[name] = {"ratio": statistics.median(snn / (steps * ann) for snn, ann in run["wall"]),
                     "cpu_ratio": statistics.median(snn / (steps * ann) for snn, ann in run["cpu"]),
                     "median_s": statistics.median(snn for snn, _ in run["wall"]),
                     "ann_median_s": statistics.median(ann for _, ann in run["wall"]),
                     "spread_s": [min(snn for snn, _ in run["wall"]), max(snn for snn, _ in run["wall"])]}
    return out


@torch.no_grad()
def profile_snn(snn: nn.Module, x: torch.Tensor, timesteps: int, repeats: int = 3) -> dict:
    """Seconds per call of `simulate` spent in each kind of layer (conv, linear, pool, neuron scan, other)."""
    spent, hooks, starts = defaultdict(float), [], {}

    def kind(m):  # the label a layer's time is added to
        return "neuron scan" if isinstance(m, Neuron) else type(m.layer).__name__

    for m in snn.modules():
        if isinstance(m, (Neuron, TimeBatched)):
            hooks.append(m.register_forward_pre_hook(lambda mod, i: starts.__setitem__(mod, time.perf_counter())))
            hooks.append(m.register_forward_hook(
                lambda mod, i, o: spent.__setitem__(kind(mod), spent[kind(mod)] + time.perf_counter() - starts[mod])))
    try:
        simulate(snn, x, timesteps)  # warm-up
        spent.clear()
        start = time.perf_counter()
        for _ in range(repeats):
            simulate(snn, x, timesteps)
        total = (time.perf_counter() - start) / repeats
    finally:
        for h in hooks:
            h.remove()
    per_call = {k: v / repeats for k, v in spent.items()}
    return {"timesteps": timesteps, "total_s": total, **per_call,
            "other (encode, reset, read-out, hooks)": total - sum(per_call.values())}


def summary(result: dict, timesteps: list) -> dict:
    """The numbers to read first: ratios per SNN and T, the speed-ups over SpikingJelly, the accuracy agreement.

    speedup_over_spikingjelly[T]: t_SJ / t_snnlab for each step mode (the ratio of the two ratios, which
    share one ANN baseline), and "faster_than_spikingjelly", the smaller of the two.
    """
    runs = result["runs"]
    out = {"malloc_keeps_freed_memory": result["machine"]["malloc_keeps_freed_memory"],
           "load_average_before_after": [result["machine"]["load_average_before"],
                                         result["machine"]["load_average_after"]]}
    for kind in ("ratio", "cpu_ratio"):
        out[kind] = {f"T{t}": {snn: runs[f"{snn}_T{t}"][kind] for snn in SNNS if f"{snn}_T{t}" in runs}
                     for t in timesteps}
    if f"spikingjelly_single_T{timesteps[0]}" in runs:
        speedups = {}
        for t in timesteps:
            ours = runs[f"snnlab_T{t}"]["ratio"]
            modes = {mode: runs[f"spikingjelly_{mode}_T{t}"]["ratio"] / ours for mode in ("single", "multi")}
            speedups[f"T{t}"] = {**modes, "faster_than_spikingjelly": min(modes.values())}
        out["speedup_over_spikingjelly"] = speedups
    if "compiled" in result:
        out["compiled"] = result["compiled"]
    if "agreement" in result:
        agree = result["agreement"]
        shown = sorted({*timesteps, *(t for t in (32, 64, 128) if t <= len(agree["timesteps"])), len(agree["timesteps"])})
        out["accuracy_at_T"] = {f"T{t}": {"snnlab": agree["snnlab_accuracy"][t - 1],
                                          "spikingjelly": agree["spikingjelly_accuracy"][t - 1]} for t in shown}
        out["max_accuracy_difference_pt"] = agree["max_abs_difference_pt"]
    return out


def _rounded(value, digits: int = 4):
    """`value` with every float rounded to `digits` significant digits (for a readable JSON)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    return value


# ---------------------------------------------------------------- the run
def load(args):
    """The cached get_ann network, calibration images (one batch) and the test loader (`train.prepare`)."""
    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    return prepare(dataset=args.dataset, train_size=args.train_size, calibration=args.calibration,
                   batch_size=args.batch_size, **epochs)


def main(argv=None) -> dict:
    """Run the whole benchmark, write the JSON and return it."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.malloc == "glibc":
        os.environ["SNNLAB_KEEP_FREED_MEMORY"] = "0"  # before the first `simulate`, which would set it
    timesteps = sorted({int(t) for t in args.timesteps.split(",")})
    result = {"machine": machine_info(args.threads), "config": vars(args)}
    result["machine"]["malloc_keeps_freed_memory"] = args.malloc == "keep" and keep_freed_memory()  # for both
    ann, info, images, test_loader = load(args)
    x = next(iter(test_loader))[0]  # [B, C, H, W] in NCHW, the batch that is timed
    snn = convert(ann, images, threshold="max", timesteps=max(timesteps), v_init=0.0)
    sj_snns = {} if args.no_spikingjelly else spikingjelly_snns(ann, images)
    anns = {"nchw": ann, "channels_last": copy.deepcopy(ann).to(memory_format=torch.channels_last)}
    result["ann"] = {"checkpoint": info["checkpoint"], "test_accuracy": info["test_accuracy"], "batch": list(x.shape)}
    scan = None if args.no_compile else compiled_scan()
    if scan is not None:
        result["compiled"] = check_compiled(snn, x, max(timesteps), scan)
    runs = time_against_ann(timing_cases(snn, sj_snns, anns, x, timesteps, scan), args.warmup, args.repeats)
    result["runs"] = summarize_runs(runs)
    result["profile_snnlab_T8"] = profile_snn(snn, x, 8)
    if sj_snns:
        result["agreement"] = agreement(snn, sj_snns["multi"], test_loader, max(args.agreement_timesteps, *timesteps))
    result["machine"]["load_average_after"] = os.getloadavg()
    result["summary"] = summary(result, timesteps)
    result = _rounded(result)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
