"""The command line: `snnlab compare` converts one trained ANN with several recipes and compares them.

    snnlab compare --dataset digits --methods max@0,percentile@0.5,mse@0.5 --timesteps 1,2,4,8

For each method (a threshold recipe of `convert.RECIPES` and V[0]/θ) and each T it reports the SNN's
test accuracy, the spikes per neuron (all spikes over the first T steps ÷ all spiking neurons, per
image) and the energy E_SNN/E_ANN (energy.py; `--energy compute|memory|qnn`, default compute), as one
table on the terminal, `compare.json` and a self-contained plotly report `compare.html`. The method
`ttfs` converts to a time-to-first-spike network instead (ttfs.py; window K = --levels, s_l = the CAT bound
with --activation cat, else the 99.9th percentile): its row has T = K steps per layer, at most one spike per
neuron, and compare.json adds its shift-add energy.

    snnlab compare --activation cat --levels 8 --methods ttfs,bound@0.5 --timesteps 8,16

Cost: a recipe that ignores T (max, percentile, p99, p99.7, bound) with a fixed V[0] is converted and
simulated once, to T_max: every t ≤ T_max is read from that run (accuracy, spikes and events are kept
per step). A recipe fitted to T (mse, datta, or V[0] = "optimal") is converted and simulated once per T.
T is at most `MAX_TIMESTEPS` = 1024: all T steps of a batch are simulated at once, so memory grows with
T × --batch-size (vgg-mini on CIFAR-10 at --batch-size 128: about 47 MB per step).

Bad options stop the command with `snnlab compare: error: ...` and exit code 2, and so do missing or
unreadable data and checkpoints (`snnlab: error: ...`).

Taught in notebook 02 (accuracy vs T per recipe).
"""
import argparse
import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import reproduce
from .activations import ACTIVATIONS
from .convert import RECIPES, T_FREE_RECIPES, convert
from .data import DATASETS, get_loaders
from .energy import ESTIMATORS, FIRST_LAYER, estimate, layer_sizes
from .files import write_atomic
from .models import MODELS
from .parallel import resolve_device
from .simulate import keep_freed_memory
from .tradeoff import measure
from .train import evaluate, prepare, seed_everything
from .ttfs import convert_ttfs, measure_ttfs, ttfs_layers
from .viz import compare_figure

DEFAULT_METHODS = {"relu": "max@0,percentile@0,percentile@0.5,p99@0.5,mse@0.5,datta@0,datta@0.5",
                   "clip": "bound@0,bound@0.5,max@0,percentile@0.5,mse@0.5",
                   "qcfs": "bound@0,bound@0.5,max@0,percentile@0.5,mse@0.5",
                   "cat": "ttfs,bound@0.5,percentile@0.5"}
TTFS = "ttfs"  # the method that converts to a time-to-first-spike network (ttfs.py) instead of a rate code
DEFAULT_TIMESTEPS = "1,2,4,8,16"
MAX_TIMESTEPS = 1024  # memory grows with T: see the module docstring


# ---------------------------------------------------------------- the run's configuration
@dataclass(frozen=True)
class Method:
    """A conversion method: a threshold recipe (a name in `convert.RECIPES`) and V[0]/θ (or "optimal"), or TTFS.

    TTFS is `Method("ttfs", None)`: it has no V[0] (`v_init` None).
    """

    recipe: str
    v_init: float | str | None

    @property
    def label(self) -> str:
        """The method as written on the command line, e.g. "percentile@0.5"."""
        if self.v_init is None:
            return self.recipe
        v_init = self.v_init if isinstance(self.v_init, str) else f"{self.v_init:g}"
        return f"{self.recipe}@{v_init}"

    @property
    def fits_timesteps(self) -> bool:
        """True when the conversion depends on T (so it is redone for every T)."""
        return self.recipe not in T_FREE_RECIPES or self.v_init == "optimal"


@dataclass
class CompareConfig:
    """Everything `snnlab compare` needs; `epochs=None` takes `train.get_ann`'s default."""

    dataset: str = "cifar10"
    model: str = "vgg-mini"
    activation: str = "relu"
    levels: int = 4
    epochs: int | None = None
    train_size: int | None = None
    methods: list = field(default_factory=list)  # [Method]
    timesteps: list = field(default_factory=list)  # [int], increasing
    seed: int = 0
    calibration: int = 1000
    batch_size: int = 128
    output: str = "reports"
    first_layer: str = "once"
    device: str | None = None  # None: cuda when available, else cpu
    energy: str = "compute"


def parse_method(text: str) -> Method:
    """Parse "recipe" or "recipe@v0" (v0 a number in [0, 1] or "optimal"; no suffix: V[0] = θ/2), or "ttfs"."""
    recipe, _, v_text = text.strip().partition("@")
    if recipe == TTFS:
        if v_text:
            raise ValueError(f"method {text!r}: ttfs has no V[0]; write just 'ttfs' (its window K is --levels)")
        return Method(TTFS, None)
    if recipe not in RECIPES:
        raise ValueError(f"unknown method {text!r}: the recipe must be one of {', '.join(sorted(RECIPES))}, "
                         "optionally followed by @V0 (e.g. percentile@0.5, mse@optimal), or 'ttfs'")
    if not v_text:
        return Method(recipe, 0.5)
    if v_text == "optimal":
        return Method(recipe, "optimal")
    try:
        v_init = float(v_text)
    except ValueError:
        v_init = -1.0
    if not 0 <= v_init <= 1:
        raise ValueError(f"method {text!r}: V0 after '@' must be a number in [0, 1] (a fraction of θ) "
                         f"or 'optimal', got {v_text!r}")
    return Method(recipe, v_init)


def parse_methods(text: str, activation: str = "relu") -> list:
    """Parse a comma list of methods; "bound" needs an ANN with a trained bound (clip, qcfs or cat)."""
    methods = [parse_method(item) for item in text.split(",") if item.strip()]
    if not methods:
        raise ValueError(f"--methods: give at least one method, e.g. {DEFAULT_METHODS['relu']}")
    if activation == "relu" and any(m.recipe == "bound" for m in methods):
        raise ValueError("method 'bound' takes θ from a trained clip bound λ: use --activation clip, qcfs or cat")
    labels = [m.label for m in methods]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--methods lists a method twice: {', '.join(labels)}")
    return methods


def parse_timesteps(text: str) -> list:
    """Parse a comma list of T values (integers ≥ 1) into a sorted list without repeats."""
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ValueError(f"--timesteps must be a comma list of integers ≥ 1, e.g. {DEFAULT_TIMESTEPS}; got {text!r}")
    if max(values) > MAX_TIMESTEPS:
        raise ValueError(f"--timesteps: T = {max(values)} is above the limit of {MAX_TIMESTEPS}: all T steps of a "
                         "batch are simulated at once, so memory grows with T × --batch-size (vgg-mini on CIFAR-10 at "
                         "--batch-size 128: about 47 MB per step); for longer runs simulate from Python in chunks of "
                         "steps (a Neuron keeps its potential between calls until reset)")
    return sorted(set(values))


def _check_positive(**values) -> None:
    """Raise a ValueError naming the option when one of `values` (option name → int or None) is < 1."""
    for name, value in values.items():
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be ≥ 1, got {value}")


def config_from_args(args: argparse.Namespace) -> CompareConfig:
    """Validate the parsed command line and build the run's `CompareConfig` (ValueError on bad input)."""
    _check_positive(levels=args.levels, epochs=args.epochs, train_size=args.train_size,
                    calibration=args.calibration, batch_size=args.batch_size)
    if not 0 <= args.seed < 2**32:
        raise ValueError(f"--seed must be an integer from 0 to 2**32 − 1 (NumPy's range), got {args.seed}")
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise ValueError(f"--output {args.output!r} is an existing file; name a folder (created if missing)")
    methods = parse_methods(args.methods or DEFAULT_METHODS[args.activation], args.activation)
    return CompareConfig(dataset=args.dataset, model=args.model, activation=args.activation,
                         levels=args.levels, epochs=args.epochs, train_size=args.train_size, methods=methods,
                         timesteps=parse_timesteps(args.timesteps), seed=args.seed,
                         calibration=args.calibration, batch_size=args.batch_size, output=args.output,
                         first_layer=args.first_layer, device=str(resolve_device(args.device)),
                         energy=args.energy)


def build_parser() -> argparse.ArgumentParser:
    """The `snnlab` argument parser, with its `compare` sub-command."""
    parser = argparse.ArgumentParser(prog="snnlab", description="Ultra-low-latency SNN experiments.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("compare", help="convert one ANN with several recipes; accuracy/spikes/energy vs T",
                            description="Convert one trained ANN with several threshold recipes and compare "
                                        "the SNNs' accuracy, spikes and energy at several T.",
                            epilog="example: snnlab compare --dataset digits --methods max@0,mse@0.5 --timesteps 1,2,4")
    p.add_argument("--dataset", choices=DATASETS, default="cifar10", help="default: cifar10")
    p.add_argument("--model", choices=list(MODELS), default="vgg-mini", help="default: vgg-mini")
    p.add_argument("--activation", choices=list(ACTIVATIONS), default="relu", help="the ANN's (default: relu)")
    p.add_argument("--levels", type=int, default=4,
                   help="QCFS quantization levels L; CAT's and ttfs's window K, steps per layer (default: 4)")
    p.add_argument("--epochs", type=int, default=None, help="ANN training epochs (default: get_ann's)")
    p.add_argument("--train-size", type=int, default=None, help="ANN training images (default: all)")
    p.add_argument("--methods", default=None,
                   help=f"comma list of RECIPE[@V0], RECIPE one of {','.join(RECIPES)}, V0 = V[0]/θ in [0, 1] or "
                        f"'optimal' (no @: 0.5), or ttfs (time-to-first-spike). Default for relu: "
                        f"{DEFAULT_METHODS['relu']}; for clip and qcfs: {DEFAULT_METHODS['clip']}; "
                        f"for cat: {DEFAULT_METHODS['cat']}")
    p.add_argument("--timesteps", default=DEFAULT_TIMESTEPS,
                   help=f"comma list of T, each ≤ {MAX_TIMESTEPS} (default: {DEFAULT_TIMESTEPS})")
    p.add_argument("--seed", type=int, default=0, help="of the ANN, the data subsets and calibration (default: 0)")
    p.add_argument("--calibration", type=int, default=1000, help="training images to calibrate θ (default: 1000)")
    p.add_argument("--batch-size", type=int, default=128, help="of the SNN evaluation (default: 128)")
    p.add_argument("--output", default="reports", help="folder for compare.json, compare.html (default: reports)")
    p.add_argument("--first-layer", choices=FIRST_LAYER, default="once",
                   help="energy: the first conv computed once (direct encoding) or charged at every step "
                        "(default: once)")
    p.add_argument("--device", default=None, help="where the ANN and SNNs run (default: cuda when available, else cpu)")
    p.add_argument("--energy", choices=ESTIMATORS, default="compute",
                   help="energy estimator of the table: compute (arithmetic only, the papers'), memory (+ SRAM "
                        "traffic) or qnn (against a ⌈log2(T+1)⌉-bit quantized ANN); compare.json holds all three "
                        "(default: compute)")
    p.set_defaults(command_parser=p)  # so that main() reports bad values with this command's usage
    reproduce.add_commands(commands)  # `snnlab train` and `snnlab reproduce` (reproduce.py)
    return parser


# ---------------------------------------------------------------- measuring
def energies(sizes: dict, rates: dict, steps: int, first_layer: str) -> dict:
    """{estimator: {"ann_uj", "snn_uj", "layers": [{"name", "ann_uj", "snn_uj"}]}} for every estimator."""
    result = {}
    for name in ESTIMATORS:
        report = estimate(name, sizes, rates, steps, first_layer)
        result[name] = {"ann_uj": report.ann_pj / 1e6, "snn_uj": report.snn_pj / 1e6,
                        "layers": [{"name": d["name"], "ann_uj": d["ann_pj"] / 1e6, "snn_uj": d["snn_pj"] / 1e6}
                                   for d in report.layers]}
    return result


def _measure(snn, test_loader, run_steps: int, wanted: list, sizes: dict, config: CompareConfig) -> list:
    """Simulate `snn` for `run_steps` steps on the test set; one result row per T in `wanted` (`tradeoff.measure`)."""
    rows = []
    for row in measure(snn, test_loader, run_steps, wanted):
        energy = energies(sizes, row["event_rate"], row["timesteps"], config.first_layer)
        chosen = energy[config.energy]
        rows.append({**row, "energy_uj": chosen["snn_uj"], "ann_energy_uj": chosen["ann_uj"],
                     "energy_vs_ann": chosen["snn_uj"] / chosen["ann_uj"], "energies": energy})
    return rows


def _run_method(ann, method: Method, images, test_loader, sizes: dict, config: CompareConfig) -> tuple:
    """Convert and evaluate one method at every T of the config: (rows, {"convert_s", "simulate_s"})."""
    plans = [(t, [t]) for t in config.timesteps] if method.fits_timesteps else \
        [(config.timesteps[-1], config.timesteps)]  # (T to convert for and run, T values read out)
    rows, seconds = [], {"convert_s": 0.0, "simulate_s": 0.0}
    for run_steps, wanted in plans:
        start = time.perf_counter()
        snn = convert(ann, images, threshold=method.recipe, timesteps=run_steps, v_init=method.v_init)
        seconds["convert_s"] += time.perf_counter() - start
        start = time.perf_counter()
        rows += _measure(snn, test_loader, run_steps, wanted, sizes, config)
        seconds["simulate_s"] += time.perf_counter() - start
    return [{"method": method.label, **row} for row in rows], seconds


def _run_ttfs(ann, images, test_loader, config: CompareConfig) -> tuple:
    """Convert to TTFS (window K = config.levels) and measure it: ([one row], {"convert_s", "simulate_s"})."""
    start = time.perf_counter()
    threshold = "bound" if config.activation == "cat" else "percentile"
    snn = convert_ttfs(ann, images, window=config.levels, threshold=threshold)
    seconds = {"convert_s": time.perf_counter() - start}
    start = time.perf_counter()
    result = measure_ttfs(snn, test_loader)
    seconds["simulate_s"] = time.perf_counter() - start
    row = {"method": TTFS, "timesteps": config.levels, "accuracy": result.accuracy,
           "spikes_per_neuron": result.spikes_total, "energy_uj": result.energy.snn_pj / 1e6,
           "energy_vs_ann": result.energy.snn_pj / result.energy.ann_pj, "event_rate": result.event_rate,
           "shift_add_uj": result.shift_add.snn_pj / 1e6, "latency_steps": config.levels * len(ttfs_layers(snn)),
           "spikes_per_layer": result.spikes_per_neuron}
    return [row], seconds


def _prepare(config: CompareConfig) -> tuple:
    """Train or load the ANN and load the calibration images and the test set (`train.prepare`)."""
    seed_everything(config.seed)
    available = len(get_loaders(config.dataset, augment=False)[0].x)
    of_dataset = f"training images of {config.dataset}"
    for option, value, most, what in (
            ("--train-size", config.train_size, available, of_dataset),
            ("--calibration", config.calibration, config.train_size or available,
             "images of --train-size" if config.train_size else of_dataset)):
        if value is not None and value > most:
            raise ValueError(f"{option} {value} is more than the {most} {what}: pass at most {most}")
    epochs = {} if config.epochs is None else {"epochs": config.epochs}
    return prepare(dataset=config.dataset, model=config.model, activation=config.activation, levels=config.levels,
                   train_size=config.train_size, calibration=config.calibration, batch_size=config.batch_size,
                   seed=config.seed, device=config.device, **epochs)


def run_compare(config: CompareConfig) -> dict:
    """Run the comparison described by `config` and return its results (what compare.json holds)."""
    start = time.perf_counter()
    ann, info, images, test_loader = _prepare(config)
    sizes = layer_sizes(ann, images[:1])  # F_l, W_l, N_in, N_out per layer, per image
    ann_uj = estimate(config.energy, sizes, dict.fromkeys(sizes, 0.0), 1, config.first_layer).ann_pj / 1e6
    ann_entry = {"accuracy": evaluate(ann, test_loader), "energy_uj": ann_uj, "sizes": sizes,
                 "macs": sum(s["macs"] for s in sizes.values()), "epochs": info["config"]["epochs"],
                 "checkpoint": info["checkpoint"], "cached": info["cached"], "train_s": info["train_seconds"]}
    timings, rows = {"prepare_s": time.perf_counter() - start, "methods": {}}, []
    for method in tqdm(config.methods, desc="methods", unit="method"):
        method_rows, timings["methods"][method.label] = (
            _run_ttfs(ann, images, test_loader, config) if method.recipe == TTFS else
            _run_method(ann, method, images, test_loader, sizes, config))
        rows += method_rows
    timings["total_s"] = time.perf_counter() - start
    config_dict = {**asdict(config), "methods": [m.label for m in config.methods], "epochs": ann_entry["epochs"]}
    return {"config": config_dict, "ann": ann_entry, "rows": rows, "test_images": len(test_loader.x),
            "calibration_images": len(images), "timings": timings, "command": reproduce_command(config_dict),
            "torch_version": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads()}


# ---------------------------------------------------------------- reporting
def reproduce_command(config: dict) -> str:
    """The `snnlab compare` command line that repeats a run (every option explicit)."""
    options = {"dataset": config["dataset"], "model": config["model"], "activation": config["activation"],
               "levels": config["levels"], "epochs": config["epochs"],
               "train-size": config["train_size"], "methods": ",".join(config["methods"]),
               "timesteps": ",".join(map(str, config["timesteps"])), "seed": config["seed"],
               "calibration": config["calibration"], "batch-size": config["batch_size"],
               "output": config["output"], "first-layer": config["first_layer"], "energy": config["energy"]}
    return "snnlab compare " + " ".join(f"--{k} {shlex.quote(str(v))}" for k, v in options.items() if v is not None)


def format_table(result: dict) -> str:
    """The results as one plain-text table: the ANN first, then one row per method and T."""
    config, ann = result["config"], result["ann"]
    estimator = config.get("energy", "compute")  # compare.json files from before --energy hold compute
    lines = [f"{config['model']} on {config['dataset']} ({config['activation']}), {result['test_images']} test "
             f"images, θ calibrated on {result['calibration_images']} training images",
             "spikes/neuron: all spikes over the first T steps ÷ all spiking neurons, per image; "
             f"E/E_ANN: SNN energy ÷ ANN's, estimator {estimator} (first layer {config['first_layer']}; "
             "lower is better)" + ("; qnn: the ANN quantized to ⌈log2(T+1)⌉ bits, its µJ in the ANN row at T = 1"
                                   if estimator == "qnn" else ""),
             f"{'method':<18}{'T':>4}{'acc %':>9}{'Δ acc':>8}{'spikes/neuron':>15}{'energy µJ':>11}{'E/E_ANN':>9}",
             f"{'ANN':<18}{'–':>4}{ann['accuracy']:>9.2f}{'':>8}{'–':>15}{ann['energy_uj']:>11.2f}{1:>9.3f}"]
    for row in result["rows"]:
        lines.append(f"{row['method']:<18}{row['timesteps']:>4}{row['accuracy']:>9.2f}"
                     f"{round(row['accuracy'] - ann['accuracy'], 2) + 0.0:>+8.2f}{row['spikes_per_neuron']:>15.3f}"
                     f"{row['energy_uj']:>11.2f}{row['energy_vs_ann']:>9.3f}")
    lines += [f"ttfs: T = K steps per layer ({row['latency_steps']} steps in all), ≤ 1 spike per neuron; with log "
              f"weights a synaptic event is a shift-add: {row['shift_add_uj']:.2f} µJ" for row in result["rows"]
              if row["method"] == TTFS]
    return "\n".join(lines)


def write_reports(result: dict, folder: Path) -> tuple:
    """Write compare.json and a self-contained compare.html (plotly.js inlined) into `folder`, each atomically."""
    json_path, html_path = folder / "compare.json", folder / "compare.html"
    write_atomic(json_path, lambda f: f.write((json.dumps(result, indent=2) + "\n").encode()))
    html = compare_figure(result).to_html(include_plotlyjs=True, full_html=True)
    write_atomic(html_path, lambda f: f.write(html.encode()))
    return json_path, html_path


def main(argv: list | None = None) -> int:
    """Entry point of the `snnlab` console script (and `python -m snnlab`); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("train", "reproduce"):
        return reproduce.main(args)
    try:
        config = config_from_args(args)
    except ValueError as err:
        args.command_parser.error(str(err))  # prints usage and the message, exits with code 2
    tuned = keep_freed_memory()
    try:
        result = {**run_compare(config), "malloc_keeps_freed_memory": tuned}
    except (RuntimeError, ValueError, OSError) as err:  # missing or broken data or checkpoint: the message says why
        print(f"snnlab: error: {err}", file=sys.stderr)
        return 2
    json_path, html_path = write_reports(result, Path(config.output))
    print(format_table(result))
    print(f"\nwrote {json_path} and {html_path} in {result['timings']['total_s']:.1f} s")
    print(f"reproduce with:\n  {result['command']}")
    return 0
