"""Time-to-first-spike (Lew et al., reconstruction): CAT vs ReLU ANN, TTFS conversion, 5-bit log weights, energy.

    SNNLAB_DATA=../shared/data python bench/ttfs.py --epochs 8 --train-size 5000

Trains (or loads) a ReLU and a CAT ANN with the same budget, converts both to TTFS, checks that the CAT ANN's
TTFS network answers like the CAT ANN on every test image, fine-tunes 5-bit log weights, and compares accuracy,
spikes per neuron and compute energy with the rate-coded SNNs of `snnlab compare` (run as a command, so the
rate-coded rows are exactly the CLI's). Writes bench/results/ttfs.json and prints a markdown table.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from snnlab.convert import fold_batchnorm
from snnlab.data import get_loaders
from snnlab.train import evaluate, prepare, seed_everything
from snnlab.ttfs import convert_ttfs, log_weights, measure_ttfs, ttfs_layers

RESULTS = Path(__file__).resolve().parent / "results" / "ttfs.json"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="cifar10", help="cifar10 (the README's table) or digits (a quick check)")
    p.add_argument("--epochs", type=int, default=None, help="of both ANNs (default: get_ann's)")
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--window", type=int, default=8, help="K, steps per layer (the CAT ANN's levels)")
    p.add_argument("--bits", type=int, default=5)
    p.add_argument("--fine-tune-epochs", type=int, default=1)
    p.add_argument("--fine-tune-lr", type=float, default=0.01)
    p.add_argument("--rate-methods", default="percentile@0.5,p99@0.5")
    p.add_argument("--timesteps", default="4,8,16,32", help="of the rate-coded SNNs")
    p.add_argument("--calibration", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def ttfs_row(label: str, result, snn, ann_accuracy: float) -> dict:
    return {"network": label, "accuracy": result.accuracy, "delta_vs_ann": result.accuracy - ann_accuracy,
            "spikes_per_neuron": result.spikes_total, "spikes_per_layer": result.spikes_per_neuron,
            "latency_steps": snn.window * len(ttfs_layers(snn)), "energy_uj": result.energy.snn_pj / 1e6,
            "energy_vs_ann": result.energy.snn_pj / result.energy.ann_pj,
            "shift_add_uj": result.shift_add.snn_pj / 1e6}


def rate_rows(args, epochs: dict) -> tuple:
    """The rate-coded SNNs of the ReLU ANN, from `snnlab compare` run as a command."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "snnlab", "compare", "--dataset", args.dataset, "--activation", "relu", "--methods", args.rate_methods,
                   "--timesteps", args.timesteps, "--seed", str(args.seed), "--calibration", str(args.calibration),
                   "--output", folder, *epochs]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        result = json.loads((Path(folder) / "compare.json").read_text())
    return result["rows"], result["command"]


def main():
    args = parse_args()
    start = time.perf_counter()
    seed_everything(args.seed)
    budget = {k: v for k, v in (("epochs", args.epochs), ("train_size", args.train_size)) if v is not None}
    common = dict(dataset=args.dataset, calibration=args.calibration, seed=args.seed, progress=False, **budget)
    relu, relu_info, images, test_loader = prepare(**common)
    cat, cat_info, _, _ = prepare(activation="cat", levels=args.window, **common)
    accuracy = {"relu_ann": evaluate(relu, test_loader), "cat_ann": evaluate(cat, test_loader)}

    cat_snn = convert_ttfs(cat)
    cat_ttfs = measure_ttfs(cat_snn, test_loader)
    ann_predictions = torch.cat([cat(x).argmax(1) for x, _ in test_loader])
    folded = fold_batchnorm(cat)
    bitwise = all(torch.equal(cat_snn(x), folded(x)) for x, _ in test_loader)
    relu_snn = convert_ttfs(relu, images, window=args.window, threshold="percentile")
    relu_ttfs = measure_ttfs(relu_snn, test_loader)
    train_loader, _ = get_loaders(args.dataset, batch_size=128, train_size=args.train_size, seed=args.seed)
    rounded_snn = convert_ttfs(log_weights(cat, args.bits))
    tuned_snn = convert_ttfs(log_weights(cat, args.bits, train_loader, epochs=args.fine_tune_epochs,
                                         lr=args.fine_tune_lr))
    rows = [ttfs_row("ReLU ANN → TTFS (99.9th pct.)", relu_ttfs, relu_snn, accuracy["relu_ann"]),
            ttfs_row("CAT ANN → TTFS", cat_ttfs, cat_snn, accuracy["cat_ann"]),
            ttfs_row(f"CAT → TTFS, {args.bits}-bit log (rounded)", measure_ttfs(rounded_snn, test_loader),
                     rounded_snn, accuracy["cat_ann"]),
            ttfs_row(f"CAT → TTFS, {args.bits}-bit log (fine-tuned)", measure_ttfs(tuned_snn, test_loader),
                     tuned_snn, accuracy["cat_ann"])]
    epochs = [f"--epochs={args.epochs}"] if args.epochs else []
    epochs += [f"--train-size={args.train_size}"] if args.train_size else []
    rate, rate_command = rate_rows(args, epochs)
    result = {"config": vars(args), "test_images": len(test_loader.x), "ann_accuracy": accuracy,
              "ann_energy_uj": cat_ttfs.energy.ann_pj / 1e6, "train_seconds": {"relu": relu_info["train_seconds"],
                                                                              "cat": cat_info["train_seconds"]},
              "ttfs_equals_cat_ann": {"same_predictions": int((cat_ttfs.predictions == ann_predictions).sum()),
                                      "images": len(ann_predictions), "logits_bitwise_equal_folded_ann": bitwise},
              "ttfs": rows, "rate_coded": rate, "rate_command": rate_command,
              "seconds": time.perf_counter() - start, "torch": torch.__version__, "threads": torch.get_num_threads()}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


def markdown(result: dict) -> str:
    """The README table: TTFS rows, then the rate-coded SNN rows of `snnlab compare`."""
    eq, acc = result["ttfs_equals_cat_ann"], result["ann_accuracy"]
    lines = [f"ReLU ANN {acc['relu_ann']:.2f} %, CAT ANN {acc['cat_ann']:.2f} % ({result['test_images']} test images, "
             f"ANN {result['ann_energy_uj']:.1f} µJ per image); TTFS = CAT ANN on {eq['same_predictions']}/"
             f"{eq['images']} images (logits bit-equal to the folded ANN: {eq['logits_bitwise_equal_folded_ann']})", "",
             "| network | steps | acc % | Δ vs its ANN | spikes/neuron | µJ/image (E_AC) | E/E_ANN | µJ (shift-add) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["ttfs"]:
        lines.append(f"| {r['network']} | {r['latency_steps']} | {r['accuracy']:.2f} | {r['delta_vs_ann']:+.2f} | "
                     f"{r['spikes_per_neuron']:.3f} | {r['energy_uj']:.2f} | {r['energy_vs_ann']:.3f} | "
                     f"{r['shift_add_uj']:.2f} |")
    for r in result["rate_coded"]:
        lines.append(f"| ReLU ANN → rate {r['method']} | T = {r['timesteps']} | {r['accuracy']:.2f} | "
                     f"{r['accuracy'] - acc['relu_ann']:+.2f} | {r['spikes_per_neuron']:.3f} | {r['energy_uj']:.2f} | "
                     f"{r['energy_vs_ann']:.3f} | – |")
    layers = result["ttfs"][-1]["spikes_per_layer"]
    lines += ["", "spikes per neuron per layer (fine-tuned log TTFS): " +
              ", ".join(f"{n} {v:.3f}" for n, v in layers.items())]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
