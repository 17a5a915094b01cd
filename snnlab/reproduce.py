"""The papers' settings as configs, and the runner behind `snnlab train` and `snnlab reproduce NAME`.

    snnlab reproduce --list                                  # each config with its paper's number
    snnlab reproduce qcfs-vgg16-cifar10-t4 --dry-run         # 1 batch on the CPU: checks the config
    torchrun --nproc_per_node=4 -m snnlab reproduce diet-vgg16-cifar10-t5 --device cuda

A config (snnlab/configs/NAME.json) is data: the data set and model, the ANN's training (optimizer, lr,
schedule, epochs, batch size) and the SNN method with its own settings: "convert" (threshold recipe,
V[0], T), "diet" (`train_snn.diet_init` + BPTT), "iir" (DIET start, then `iir_schedule`), "datta"
(`convert` with the "datta" recipe + BPTT with the boxcar surrogate) or "ttfs" (snnlab.ttfs, when
installed). Each run is one ANN stage and one SNN stage, both in train.py / train_snn.py's loops;
under torchrun they run data parallel (parallel.py). Every stage checkpoints after each epoch in the
run folder, so a run that is stopped, or loses a process, continues where it was with the same command.

Reference: methods digest §1–§5 and §9 (the papers' numbers); README "Paper scale".
"""
import json
import re
import sys
import time
from functools import partial
from pathlib import Path

import torch

from . import ttfs
from .activations import activation_factory
from .convert import RECIPES, convert, percentile_threshold
from .data import DATASETS, TensorLoader, data_source, dataset_info, get_loaders
from .files import cache_dir, write_atomic
from .models import MODELS, build_model
from .parallel import (ShardedLoader, barrier, finish, get_rank, get_world_size, init_from_env, is_main,
                       resolve_device)
from .simulate import evaluate_snn
from .train import seed_everything, train_ann
from .train_snn import diet_init, iir_schedule, make_trainable, train_snn

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SNN_METHODS = ("none", "convert", "diet", "iir", "datta", "ttfs")
DRY_RUN_IMAGES = 8  # images per batch of a dry run


# ---------------------------------------------------------------- configs
def config_names() -> list:
    """The names of the shipped configs (snnlab/configs/*.json), sorted."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(name: str) -> dict:
    """The config called `name` (or the JSON file at path `name`), checked (`check_config`)."""
    path = Path(name) if name.endswith(".json") else CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"no config {name!r}: choose one of {', '.join(config_names())} (snnlab reproduce "
                         "--list), or pass the path of a .json file")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"config {path} is not valid JSON ({err})") from err
    check_config(config, str(path))
    return config


def check_config(config: dict, source: str = "config") -> None:
    """Raise a ValueError naming `source` and the key when a config misses a key or has a bad value."""
    for key in ("name", "dataset", "model", "ann", "snn"):
        if key not in config:
            raise ValueError(f"{source}: missing key {key!r}")
    ann, snn = config["ann"], config["snn"]
    for key in ("activation", "epochs", "batch_size", "optimizer", "lr", "schedule"):
        if key not in ann:
            raise ValueError(f"{source}: missing key 'ann.{key}'")
    checks = [("dataset", config["dataset"], DATASETS), ("model", config["model"], tuple(MODELS)),
              ("snn.method", snn.get("method"), SNN_METHODS)]
    for key, value, valid in checks:
        if value not in valid:
            raise ValueError(f"{source}: {key} = {value!r}; choose one of {', '.join(valid)}")
    if snn["method"] in ("convert", "diet", "iir", "datta"):
        try:
            recipe(snn.get("threshold", "percentile"))
        except ValueError as err:
            raise ValueError(f"{source}: snn.threshold: {err}") from err
        steps = snn.get("timesteps")
        if not all(isinstance(t, int) and t >= 1 for t in (steps if isinstance(steps, list) else [steps])):
            raise ValueError(f"{source}: snn.timesteps must be an integer ≥ 1 (a list for 'iir'), got {steps!r}")


def recipe(name: str):
    """A threshold recipe by name: one of `convert.RECIPES`, or "pNN" (the NN-th percentile, e.g. "p90")."""
    if name in RECIPES:
        return name
    match = re.fullmatch(r"p(\d+(\.\d+)?)", str(name))
    if match is None:
        raise ValueError(f"unknown threshold recipe {name!r}: one of {', '.join(RECIPES)}, or pNN (e.g. p90)")
    return partial(percentile_threshold, p=float(match.group(1)))


def format_list() -> str:
    """One line per config: its name, method, data set, T and the paper's accuracy."""
    lines = [f"{'config':<26}{'method':<9}{'dataset':<10}{'T':>4}  paper's accuracy (row)"]
    for name in config_names():
        c = load_config(name)
        steps = c["snn"].get("timesteps")
        steps = steps[-1] if isinstance(steps, list) else steps if steps is not None else "TTFS"
        lines.append(f"{name:<26}{c['snn']['method']:<9}{c['dataset']:<10}{steps!s:>4}  "
                     f"{c['paper_accuracy']:.2f} %  ({c.get('paper_row', c.get('paper', ''))})")
    return "\n".join(lines)


# ---------------------------------------------------------------- data
def _has_local_data(dataset: str) -> bool:
    """True when `dataset` loads without a download (digits, the SNNLAB_DATA subset or the npz cache)."""
    source = data_source(dataset)
    return dataset == "digits" or source == "cifar10_10k.npz" or (cache_dir() / source).is_file()


def _data(config: dict, dry_run: bool, train_size=None):
    """(train loader, test loader, calibration images, note): the run's data, or a 1-batch stand-in."""
    dataset, seed, batch = config["dataset"], config.get("seed", 0), config["ann"]["batch_size"]
    calibration = config["snn"].get("calibration", 1000)
    if dry_run:
        batch, train_size, calibration = DRY_RUN_IMAGES, DRY_RUN_IMAGES, DRY_RUN_IMAGES
        if not _has_local_data(dataset):
            info = dataset_info(dataset)
            generator = torch.Generator().manual_seed(seed)
            x = torch.randn(batch, info.in_channels, info.image_size, info.image_size, generator=generator)
            y = torch.arange(batch) % info.num_classes
            loader = TensorLoader(x, y, batch_size=batch, shuffle=True, seed=seed)
            return loader, TensorLoader(x, y, batch_size=batch), x, \
                f"{dataset} is not available offline: {batch} synthetic images of its shape stand in"
    train, test = get_loaders(dataset, batch_size=batch, train_size=train_size, test_size=batch if dry_run else None,
                              seed=seed)
    plain, _ = get_loaders(dataset, batch_size=calibration, train_size=train_size, augment=False, seed=seed)
    note = f"{len(train.x)} training and {len(test.x)} test images of {dataset}"
    return train, test, next(iter(plain))[0], note


# ---------------------------------------------------------------- stages
def _log(message: str) -> None:
    if is_main():
        print(message, flush=True)


def _ann_stage(config: dict, train, test, run_dir, device, dry_run: bool, progress: bool):
    """Build and train the ANN (resumable checkpoint `ann.pt` in the run folder); returns (ann, history)."""
    ann_config, dataset = config["ann"], dataset_info(config["dataset"])
    levels = {"levels": ann_config["levels"]} if "levels" in ann_config else {}
    seed_everything(config.get("seed", 0))
    ann = build_model(config["model"], num_classes=dataset.num_classes, in_channels=dataset.in_channels,
                      image_size=dataset.image_size, batch_norm=ann_config.get("batch_norm", True),
                      pool=ann_config.get("pool", "avg"), dropout=ann_config.get("dropout", 0.0),
                      activation_layer=activation_factory(ann_config["activation"], **levels)).to(device)
    optional = {k: ann_config[k] for k in ("momentum", "weight_decay", "label_smoothing") if k in ann_config}
    if "milestones" in ann_config:
        optional["milestones"] = tuple(ann_config["milestones"])
    history = train_ann(ann, train, epochs=1 if dry_run else ann_config["epochs"], lr=ann_config["lr"],
                        schedule=ann_config["schedule"], optimizer=ann_config["optimizer"], test_loader=test,
                        checkpoint=None if run_dir is None else run_dir / "ann.pt", progress=progress, **optional)
    return ann.eval(), history


def _snn_stage(config: dict, ann, images, train, test, run_dir, dry_run: bool, progress: bool) -> list:
    """Convert and (per the method) train the SNN; one {"timesteps", "accuracy"} row per T evaluated."""
    snn_config, method = config["snn"], config["snn"]["method"]
    if method == "none":
        return []
    if method == "ttfs":
        return _ttfs_stage(snn_config, ann, images, train, test, dry_run, progress)
    threshold, steps = recipe(snn_config.get("threshold", "percentile")), snn_config["timesteps"]
    first = steps[0] if isinstance(steps, list) else steps
    if method in ("diet", "iir"):
        snn = diet_init(ann, images, scale=snn_config.get("scale", 1.0), threshold=threshold, timesteps=first,
                        surrogate=snn_config.get("surrogate", "triangle"))
    else:
        snn = convert(ann, images, threshold=threshold, timesteps=first, v_init=snn_config.get("v_init", 0.5))
    if method == "convert":
        return [{"timesteps": first, "accuracy": evaluate_snn(snn, test, first, progress=False)[-1].item()}]
    if method == "datta":
        make_trainable(snn, surrogate=snn_config.get("surrogate", "boxcar"), leak=False)
    loader = _rebatch(train, snn_config.get("batch_size"), dry_run, config.get("seed", 0))
    kwargs = dict(epochs=1 if dry_run else snn_config["epochs"], lr=snn_config["lr"], progress=progress,
                  schedule=snn_config.get("schedule", "cosine"), test_loader=test)
    if method == "iir":
        stages = iir_schedule(snn, loader, timesteps=tuple(steps), checkpoint=_path(run_dir, "iir"), **kwargs)
        return [{"timesteps": t, "accuracy": h["test_acc"][-1], "history": h} for t, (_, h) in stages.items()]
    history = train_snn(snn, loader, timesteps=first, weight_decay=snn_config.get("weight_decay", 0.0),
                        checkpoint=_path(run_dir, f"{method}-T{first}", ".pt"), **kwargs)
    return [{"timesteps": first, "accuracy": history["test_acc"][-1], "history": history}]


def _ttfs_stage(snn_config: dict, ann, images, train, test, dry_run: bool, progress: bool) -> list:
    """Lew et al.: log-quantize the weights (fine-tuned), convert to TTFS, measure (needs snnlab.ttfs)."""
    quantized = ttfs.log_weights(ann, bits=snn_config.get("weight_bits", 5), train_loader=train,
                                 epochs=1 if dry_run else snn_config.get("finetune_epochs", 1),
                                 lr=snn_config.get("finetune_lr", 0.01), progress=progress)
    snn = ttfs.convert_ttfs(quantized, images, window=snn_config.get("window"))
    return [{"timesteps": snn.window, "accuracy": ttfs.measure_ttfs(snn, test).accuracy}]  # T = K steps per layer


def _rebatch(loader: ShardedLoader, batch_size, dry_run: bool, seed: int) -> ShardedLoader:
    """The training loader with the SNN stage's (global) batch size (the ANN's when None or in a dry run)."""
    if batch_size is None or dry_run or batch_size == loader.batch_size * loader.world_size:
        return loader
    plain = TensorLoader(loader.x, loader.y, batch_size=batch_size, shuffle=True, padding=loader.padding,
                         flip=loader.flip)
    return ShardedLoader(plain, seed=seed)


def _path(run_dir, name: str, suffix: str = ""):
    return None if run_dir is None else str(run_dir / f"snn-{name}") + suffix


# ---------------------------------------------------------------- the run
def run(config: dict, *, device=None, output=None, dry_run: bool = False, progress: bool = True,
        train_size=None) -> dict:
    """Run `config`: ANN stage, then SNN stage, data parallel under torchrun; returns (rank 0 writes) the result.

    Args:
        config: a checked config (`load_config`, or built by `snnlab train`).
        device: where to train (None: CUDA when available, else the CPU); under torchrun, rank r takes cuda:r.
        output: the run folder (None: cache_dir()/runs/<name>); holds the stages' checkpoints and result.json.
        dry_run: one batch of 8 images per stage, no checkpoint, on real data if it is on disk, else on
            synthetic images of the data set's shape (the result's "data" says which).
        train_size: train on this many images (None: all).

    Returns: {"name", "paper_accuracy", "ann_accuracy", "snn" (rows per T), "ann_epoch_seconds",
    "world_size", "device", "data", "seconds"}.
    """
    start, device = time.perf_counter(), resolve_device("cpu" if dry_run else device)
    joined = init_from_env(device)
    try:
        if not is_main():
            barrier()  # rank 0 downloads (and caches) the data set first
        train, test, images, note = _data(config, dry_run, train_size)
        if is_main():
            barrier()
        _log(f"{config['name']}: {note}; {get_world_size()} process(es) on {device}" + (" (dry run)" * dry_run))
        train = ShardedLoader(train, seed=config.get("seed", 0))
        run_dir = None if dry_run else Path(output or cache_dir() / "runs" / config["name"])
        ann, history = _ann_stage(config, train, test, run_dir, device, dry_run, progress)
        rows = _snn_stage(config, ann, images, train, test, run_dir, dry_run, progress)
        result = {"name": config["name"], "paper_accuracy": config.get("paper_accuracy"),
                  "ann_accuracy": history["test_acc"][-1], "ann_epoch_seconds": history["seconds"],
                  "snn": rows, "world_size": get_world_size(), "device": str(device), "data": note,
                  "dry_run": dry_run, "seconds": time.perf_counter() - start, "rank": get_rank()}
        if run_dir is not None and is_main():
            write_atomic(run_dir / "result.json", lambda f: f.write(json.dumps(result, indent=2).encode()))
        barrier()
    finally:
        if joined:
            finish()
    return result


def format_result(result: dict) -> str:
    """The result as a few lines: ANN accuracy, then the SNN's accuracy per T beside the paper's number."""
    lines = [f"{result['name']}: ANN {result['ann_accuracy']:.2f} %  ({result['data']}; {result['world_size']} "
             f"process(es) on {result['device']}{', dry run' if result['dry_run'] else ''})"]
    for row in result["snn"]:
        lines.append(f"  SNN T = {row['timesteps']}: {row['accuracy']:.2f} %")
    if result["paper_accuracy"] is not None:
        lines.append(f"  paper: {result['paper_accuracy']} %")
    return "\n".join(lines)


# ---------------------------------------------------------------- the command line (cli.py adds these)
def add_commands(commands) -> None:
    """Add the `train` and `reproduce` sub-commands to `snnlab`'s sub-parsers."""
    p = commands.add_parser("train", help="train an ANN and (optionally) an SNN, data parallel under torchrun",
                            epilog="example: torchrun --nproc_per_node=2 -m snnlab train --dataset digits "
                                   "--model vgg-mini --epochs 10 --snn diet --timesteps 5")
    p.add_argument("--dataset", choices=DATASETS, default="cifar10", help="default: cifar10")
    p.add_argument("--model", choices=list(MODELS), default="vgg-mini", help="default: vgg-mini")
    p.add_argument("--activation", default="relu", help="the ANN's: relu, clip, qcfs, … (default: relu)")
    p.add_argument("--levels", type=int, default=None, help="QCFS/CAT levels (default: the activation's)")
    p.add_argument("--epochs", type=int, default=35, help="ANN epochs (default: 35)")
    p.add_argument("--lr", type=float, default=0.2, help="ANN peak lr (default: 0.2)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="ANN optimizer (default: sgd)")
    p.add_argument("--schedule", choices=("onecycle", "cosine", "step"), default="onecycle", help="default: onecycle")
    p.add_argument("--batch-size", type=int, default=128, help="global batch size, split over processes (default: 128)")
    p.add_argument("--train-size", type=int, default=None, help="training images (default: all)")
    p.add_argument("--snn", choices=SNN_METHODS[:-1], default="none",
                   help="then: none, convert, diet (BPTT), iir (BPTT at each T of --timesteps), datta (default: none)")
    p.add_argument("--timesteps", default="5", help="T of the SNN; a comma list for iir, e.g. 5,4,3,2,1 (default: 5)")
    p.add_argument("--threshold", default="p99.7", help="threshold recipe (convert.RECIPES or pNN; default: p99.7)")
    p.add_argument("--scale", type=float, default=1.0, help="diet/iir: θ ← scale·θ (default: 1.0)")
    p.add_argument("--v-init", type=float, default=0.5, help="convert/datta: V[0]/θ (default: 0.5)")
    p.add_argument("--snn-epochs", type=int, default=1, help="BPTT epochs (per stage for iir; default: 1)")
    p.add_argument("--snn-lr", type=float, default=1e-3, help="BPTT Adam lr (default: 1e-3)")
    p.add_argument("--calibration", type=int, default=1000, help="images that set θ (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="default: 0")
    _common(p, "the run folder: checkpoints and result.json (default: cache folder/runs/train-DATASET-MODEL)")
    q = commands.add_parser("reproduce", help="run a paper's setting (snnlab reproduce --list)",
                            epilog="example: snnlab reproduce qcfs-vgg16-cifar10-t4 --dry-run")
    q.add_argument("name", nargs="?", help="a config name (see --list), a .json path, or 'all' with --dry-run")
    q.add_argument("--list", action="store_true", help="list the configs with their papers' numbers")
    q.add_argument("--dry-run", action="store_true", help="one batch per stage on the CPU: checks the config")
    q.add_argument("--train-size", type=int, default=None, help="train on this many images (default: all)")
    _common(q, "the run folder (default: cache folder/runs/NAME)")


def _common(p, output_help: str) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when available, else cpu)")
    p.add_argument("--output", default=None, help=output_help)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(command_parser=p)


def train_config(args) -> dict:
    """The config of `snnlab train`'s options (same layout as snnlab/configs/*.json)."""
    steps = [int(t) for t in str(args.timesteps).split(",") if t.strip()]
    ann = {"activation": args.activation, "epochs": args.epochs, "batch_size": args.batch_size,
           "optimizer": args.optimizer, "lr": args.lr, "schedule": args.schedule}
    if args.levels is not None:
        ann["levels"] = args.levels
    snn = {"method": args.snn, "threshold": args.threshold, "timesteps": steps if args.snn == "iir" else steps[0],
           "scale": args.scale, "v_init": args.v_init, "epochs": args.snn_epochs, "lr": args.snn_lr,
           "calibration": args.calibration}
    config = {"name": f"train-{args.dataset}-{args.model}", "dataset": args.dataset, "model": args.model,
              "seed": args.seed, "ann": ann, "snn": snn}
    check_config(config, "options")
    return config


def main(args) -> int:
    """Run `snnlab train` or `snnlab reproduce` from parsed arguments; returns the exit code."""
    if args.command == "reproduce" and args.list:
        print(format_list())
        return 0
    if args.command == "reproduce" and not args.name:
        args.command_parser.error("name a config (snnlab reproduce --list shows them)")
    try:
        configs = [train_config(args)] if args.command == "train" else \
            [load_config(n) for n in (config_names() if args.name == "all" and args.dry_run else [args.name])]
        dry_run = getattr(args, "dry_run", False)
        device = None if dry_run else resolve_device(args.device)  # a dry run runs on the CPU
    except ValueError as err:
        args.command_parser.error(str(err))
    for config in configs:
        try:
            result = run(config, device=device, output=args.output, dry_run=dry_run,
                         progress=not args.no_progress, train_size=args.train_size)
        except (RuntimeError, ValueError, OSError) as err:  # missing data, a bad checkpoint, a missing module
            print(f"snnlab: error: {config['name']}: {err}", file=sys.stderr)
            return 2
        if result["rank"] == 0:  # the process group is gone by now: is_main() would be True everywhere
            print(format_result(result))
    return 0
