"""The README's energy table: E_SNN/E_ANN of two SNNs under the three estimators of snnlab/energy.py.

    python bench/energy_table.py                     # notebook 05's CI budget (256 SNN training images, 1 epoch)
    python bench/energy_table.py --snn-train-size 2000 --epochs 2 --eval-size 1000   # notebook 05's normal knobs

The two networks, both from the 8-epoch ANN of notebooks 01–05 (`train.prepare`, cached):
  1. the best rate-coded SNN at T = 4: every conversion recipe × V[0] of notebook 07 (max, percentile, p99 ×
     V[0] ∈ {0, θ/2}), chosen by accuracy at T = 4 on 500 *training* images that did not set θ (never the test set);
  2. the T = 1 SNN of notebook 05: DIET-SNN at T = 5, then IIR-SNN stages T = 4, 3, 2, 1, with notebook 05's
     calls, knobs and cache names (so a notebook run's checkpoints are reused, and the reverse).
Each is scored on the test images (`train_snn.score`: accuracy, sizes, event rates) and priced by
`energy.estimate` under compute, memory and qnn (first layer computed once). Writes
bench/results/energy_table.json and .md.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from snnlab.convert import convert  # noqa: E402
from snnlab.data import get_loaders  # noqa: E402
from snnlab.energy import ESTIMATORS, activation_bits, estimate  # noqa: E402
from snnlab.simulate import evaluate_snn  # noqa: E402
from snnlab.train import prepare, seed_everything  # noqa: E402
from snnlab.train_snn import diet_init, iir_schedule, score, train_snn  # noqa: E402

RESULTS = Path(__file__).parent / "results"
NOTEBOOK = dict(dataset="cifar10", model="vgg-mini", epochs=8, train_size=5000, calibration=500, seed=0)
RECIPES, V_INITS = ("max", "percentile", "p99"), (0.0, 0.5)  # notebook 07's


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snn-train-size", type=int, default=256, help="notebook 05's SNN_TRAIN_SIZE (CI: 256)")
    parser.add_argument("--epochs", type=int, default=1, help="notebook 05's EPOCHS at T = 5 (CI: 1)")
    parser.add_argument("--stage-epochs", type=int, default=1, help="notebook 05's STAGE_EPOCHS, of each stage")
    parser.add_argument("--eval-size", type=int, default=300, help="test images scored (notebook 05 CI: 300)")
    parser.add_argument("--output", default=str(RESULTS / "energy_table.json"))
    return parser.parse_args(argv)


def best_rate_coded(ann, calibration, timesteps: int = 4) -> tuple:
    """(label, SNN) of the recipe × V[0] most accurate at T on 500 training images that did not set θ."""
    train, _ = get_loaders(NOTEBOOK["dataset"], batch_size=len(calibration), train_size=NOTEBOOK["train_size"],
                           augment=False, seed=NOTEBOOK["seed"])
    batches = iter(train)  # the seeded pass `prepare` takes θ's images from: its first batch is `calibration`
    next(batches)
    x, y = next(batches)  # the next 500: held out from θ
    candidates = {f"{r}@{v:g}": convert(ann, calibration, threshold=r, v_init=v) for r in RECIPES for v in V_INITS}
    chosen = {label: evaluate_snn(snn, [(x, y)], timesteps, progress=False)[-1].item()
              for label, snn in candidates.items()}
    label = max(chosen, key=chosen.get)
    return label, candidates[label], chosen


def iir_t1(ann, calibration, args) -> object:
    """Notebook 05's T = 1 network: DIET-SNN at T = 5, then IIR stages 4, 3, 2, 1 (its calls and cache names)."""
    train_loader, _ = get_loaders(NOTEBOOK["dataset"], batch_size=64, train_size=args.snn_train_size,
                                  seed=NOTEBOOK["seed"])
    rates = dict(lr=1e-4, neuron_lr=1e-2, progress=False)
    diet = diet_init(ann, calibration, scale=0.5)
    train_snn(diet, train_loader, timesteps=5, epochs=args.epochs, cache="diet", **rates)
    stages = iir_schedule(diet, train_loader, timesteps=[4, 3, 2, 1], epochs=args.stage_epochs, cache="iir", **rates)
    return stages[1][0]


def price(network: str, result: dict) -> dict:
    """E_SNN/E_ANN and µJ of one scored SNN under every estimator."""
    entry = {"network": network, "timesteps": result["timesteps"], "accuracy": result["accuracy"],
             "qnn_bits": activation_bits(result["timesteps"])}
    for name in ESTIMATORS:
        report = estimate(name, result["sizes"], result["event_rate"], result["timesteps"])
        entry[name] = {"ratio": report.snn_pj / report.ann_pj, "snn_uj": report.snn_pj / 1e6,
                       "ann_uj": report.ann_pj / 1e6}
    return entry


def markdown(rows: list) -> str:
    lines = ["| SNN | T | accuracy % | compute E_SNN/E_ANN | memory E_SNN/E_ANN | vs qnn (bits) E_SNN/E_QNN |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['network']} | {r['timesteps']} | {r['accuracy']:.1f} | {r['compute']['ratio']:.3f} | "
              f"{r['memory']['ratio']:.3f} | {r['qnn']['ratio']:.3f} ({r['qnn_bits']}) |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = parse_args(argv)
    seed_everything(NOTEBOOK["seed"])
    ann, _, calibration, test_loader = prepare(**NOTEBOOK, test_size=args.eval_size, progress=False)
    label, rate_coded, chosen = best_rate_coded(ann, calibration)
    rows = [price(f"best rate-coded conversion ({label}, chosen on training images)", score(rate_coded, test_loader, 4)),
            price("notebook 05's IIR-SNN T = 1", score(iir_t1(ann, calibration, args), test_loader, 1))]
    result = {"args": vars(args), "notebook": NOTEBOOK, "selection_accuracy_on_training_images": chosen,
              "test_images": len(test_loader.x), "rows": rows, "first_layer": "once"}
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    output.with_suffix(".md").write_text(markdown(rows) + "\n")
    print(markdown(rows))
    return result


if __name__ == "__main__":
    main()
