"""Full-fidelity SNN training runs on the CIFAR-10 subset: DIET-SNN, IIR-SNN, the direct jump, Datta & Beerel.

    python bench/training_runs.py                    # CIFAR-10 10k/2k (SNNLAB_DATA), get_ann's default ANNs
    python bench/training_runs.py --dataset digits   # a quick check of the script itself (about a minute)
    python bench/training_runs.py --init iir --skip-datta --output bench/results/training_runs_iir.json

Steps (every trained network is cached in data/checkpoints under a hash of its configuration, so a
re-run only measures; the recorded training seconds are those of the run that trained it):
  0. the ANNs: `get_ann(dataset)` (ReLU) and, before step 5, `get_ann(dataset, activation="clip")`, trained
     if missing (their training time is recorded apart from the SNNs');
  1. the θ scaling factor: the converted SNN's accuracy at T = 5 for each --scales, on training images
     (never the test set); the best one is used below (`--init iir`: IIR-SNN's own start instead,
     `train_snn.IIR_INIT`: θ = 1.0 × the 90th percentile, nothing picked);
  2. DIET-SNN: `diet_init` → `train_snn` at T = 5;
  3. IIR-SNN: `iir_schedule` at T = 4, 3, 2, 1 from the DIET-SNN;
  4. the direct jump: `diet_init` → `train_snn` at T = 1 for as many epochs as steps 2–3 together;
  5. Datta & Beerel's fit at V[0] = θ/2 (snnlab's variant; the paper runs V[0] = 0, notebook 05 both):
     `convert(clip_ann, threshold="datta", timesteps=2, v_init=0.5)` → boxcar surrogate → `train_snn` at T = 2.
Every network is scored on the whole test set (`train_snn.score`: accuracy, spikes, energy per layer), and
IIR-SNN's T = 1 network is compared with the direct jump image by image (`paired_test`: exact McNemar test).
Results: bench/results/training_runs.json and .md (the README's table). See bench/README.md.
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from snnlab.convert import RECIPE_LABELS, convert  # noqa: E402
from snnlab.data import class_interleaved, get_loaders  # noqa: E402
from snnlab.simulate import evaluate_snn, keep_freed_memory  # noqa: E402
from snnlab.train import evaluate, get_ann, seed_everything  # noqa: E402
from snnlab.train_snn import (IIR_INIT, diet_init, iir_schedule, make_trainable, paired_test, per_image_correct,  # noqa: E402
                              score, train_snn)

RESULTS = Path(__file__).parent / "results"


def parse_args(argv=None) -> argparse.Namespace:
    """The runs' options (see --help)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "digits"))
    parser.add_argument("--train-size", type=int, default=None, help="SNN training images (default: all)")
    parser.add_argument("--diet-epochs", type=int, default=6, help="epochs at T = 5")
    parser.add_argument("--stage-epochs", type=int, default=2, help="epochs of each IIR stage (T = 4, 3, 2, 1)")
    parser.add_argument("--datta-epochs", type=int, default=6, help="epochs at T = 2")
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="Adam's learning rate of the weights, all runs (the papers: 1e-4 for 200–500 epochs)")
    parser.add_argument("--neuron-lr", type=float, default=1e-2, help="Adam's learning rate of θ and λ")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--init", default="diet", choices=("diet", "iir"),
                        help="the T = 5 start and the direct jump's: diet = DIET-SNN's (99.7th percentile, θ scale "
                             "picked from --scales in step 1), iir = IIR-SNN's own (90th percentile, scale 1.0)")
    parser.add_argument("--scales", default="0.4,0.5,0.6,0.7", help="θ scaling factors to choose from")
    parser.add_argument("--calibration", type=int, default=500, help="training images that set θ")
    parser.add_argument("--seed", type=int, default=0, help="seed of the loaders, calibration images and training")
    parser.add_argument("--skip-datta", action="store_true", help="leave out step 5 (e.g. for a run with another seed)")
    parser.add_argument("--output", default=str(RESULTS / "training_runs.json"))
    return parser.parse_args(argv)


def pick_scale(ann, calibration, images, labels, scales: list) -> dict:
    """{scale: accuracy (%) at T = 5 of the converted SNN on training images}, for step 1."""
    loader = list(zip(images.split(250), labels.split(250)))
    return {s: evaluate_snn(diet_init(ann, calibration, scale=s), loader, 5, progress=False)[-1].item()
            for s in scales}


def row(method: str, result: dict, start: dict, history: dict, ann_accuracy: float, epochs: int) -> dict:
    """One line of the results table, from `score` before (`start`, or None) and after training."""
    energy = result["energy"]
    return {"method": method, "timesteps": result["timesteps"], "epochs": epochs,
            "ann_accuracy": ann_accuracy, "start_accuracy": start["accuracy"] if start else None,
            "accuracy": result["accuracy"], "gap": result["accuracy"] - ann_accuracy,
            "train_seconds": sum(history["seconds"]), "spikes_per_neuron": result["spike_rate"],
            "energy_ratio": energy.snn_pj / energy.ann_pj, "energy_uj": energy.snn_pj / 1e6,
            "ann_energy_uj": energy.ann_pj / 1e6, "energy_layers": energy.layers,
            "sizes": result["sizes"], "event_rate": result["event_rate"],
            "threshold": history["threshold"][-1], "leak": history["leak"][-1]}


def markdown(results: dict) -> str:
    """The README's tables: one line per run, then the energy per layer of the T = 1 networks."""
    c = results["config"]
    m = results["machine"]
    lines = [f"SNN training on {c['dataset']} ({results['train_images']} training images, "
             f"{results['test_images']} test images), lr {c['lr']} (θ and λ: {c['neuron_lr']}), batch "
             f"{c['batch_size']}, θ = {results['scale']} × {RECIPE_LABELS[results['init']['threshold']]}, "
             f"seed {c['seed']}; {m['torch_threads']} threads, load average "
             f"{m['load_average_before'][0]:.1f} at start; this invocation "
             f"{results['wall_seconds'] / 60:.1f} min wall, {results['cpu_seconds'] / 60:.1f} min CPU (cached "
             f"networks are only scored; 'training' is each network's own time).", "",
             "| run | T | epochs | ANN % | start % | SNN % | SNN − ANN | E_SNN / E_ANN | training (min) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        start = "–" if r["start_accuracy"] is None else f"{r['start_accuracy']:.2f}"
        lines.append(f"| {r['method']} | {r['timesteps']} | {r['epochs']} | {r['ann_accuracy']:.2f} | {start} | "
                     f"{r['accuracy']:.2f} | {r['gap']:+.2f} | {r['energy_ratio']:.3f} | "
                     f"{r['train_seconds'] / 60:.1f} |")
    if "iir_vs_direct" in results:
        d = results["iir_vs_direct"]
        lines += ["", f"IIR-SNN T = 1 vs the direct jump on the same {d['images']} test images: only IIR-SNN right on "
                      f"{d['a_only']}, only the direct jump on {d['b_only']} ({d['difference']:+.2f} pt); exact "
                      f"McNemar test p = {d['p_value']:.2g} ("
                      + ("< 0.05: a real difference)." if d["p_value"] < 0.05
                         else "≥ 0.05: the test set cannot tell them apart).")]
    for r in results["runs"]:
        if r["timesteps"] == 1:
            lines += ["", f"Energy per layer, {r['method']} at T = 1 (µJ per image):", "",
                      "| layer | MACs | input spikes per neuron | ANN µJ | SNN µJ | SNN / ANN |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {d['name']} | {d['macs']:,} | {d['rate']:.3f} | {d['ann_pj'] / 1e6:.4f} | "
                      f"{d['snn_pj'] / 1e6:.4f} | {d['snn_pj'] / d['ann_pj']:.3f} |" for d in r["energy_layers"]]
            lines.append(f"| total | | | {r['ann_energy_uj']:.4f} | {r['energy_uj']:.4f} | {r['energy_ratio']:.3f} |")
    return "\n".join(lines) + "\n"


def run_all(args, ann, info) -> dict:
    """Steps 1–5 of the module docstring; returns the results dict without machine info."""
    seed_everything(args.seed)
    calibration_loader, test_loader = get_loaders(args.dataset, batch_size=args.calibration, augment=False,
                                                  seed=args.seed)
    calibration, _ = next(iter(calibration_loader))
    train_loader, _ = get_loaders(args.dataset, batch_size=args.batch_size, train_size=args.train_size,
                                  seed=args.seed)
    ann_accuracy = evaluate(ann, test_loader)
    balanced = torch.from_numpy(class_interleaved(calibration_loader.y.numpy())[:1000])  # the subset is stored by class
    held = calibration_loader.x[balanced], calibration_loader.y[balanced]
    if args.init == "iir":  # IIR-SNN's own start: no scale to pick
        init, sweep, name = IIR_INIT, {}, "IIR-SNN stage T = 5 (IIR init)"
    else:
        sweep = pick_scale(ann, calibration, *held, [float(s) for s in args.scales.split(",")])
        init, name = {"threshold": "p99.7", "scale": max(sweep, key=sweep.get)}, "DIET-SNN"
    rates = dict(lr=args.lr, neuron_lr=args.neuron_lr)
    runs = []

    diet = diet_init(ann, calibration, **init)
    start = score(diet, test_loader, 5)
    history = train_snn(diet, train_loader, timesteps=5, epochs=args.diet_epochs, cache="diet", **rates)
    runs.append(row(name, score(diet, test_loader, 5), start, history, ann_accuracy, args.diet_epochs))

    stages = iir_schedule(diet, train_loader, timesteps=(4, 3, 2, 1), epochs=args.stage_epochs, cache="iir", **rates)
    for t, (snn, stage_history) in stages.items():
        runs.append(row(f"IIR-SNN stage T = {t}", score(snn, test_loader, t), None, stage_history, ann_accuracy,
                        args.stage_epochs))

    total = args.diet_epochs + 4 * args.stage_epochs
    direct = diet_init(ann, calibration, **init)
    start = score(direct, test_loader, 1)
    history = train_snn(direct, train_loader, timesteps=1, epochs=total, cache="direct", **rates)
    runs.append(row("direct jump to T = 1", score(direct, test_loader, 1), start, history, ann_accuracy, total))
    paired = paired_test(per_image_correct(stages[1][0], test_loader, 1), per_image_correct(direct, test_loader, 1))
    results = {"init": init, "scale_sweep": sweep, "scale": init["scale"], "train_images": len(train_loader.x),
               "test_images": len(test_loader.x), "runs": runs, "iir_vs_direct": paired,
               "anns": {"relu": {k: info[k] for k in ("test_accuracy", "train_seconds", "checkpoint")}}}
    if args.skip_datta:
        return results

    clip_ann, clip_info = get_ann(dataset=args.dataset, activation="clip")  # trained here if missing
    clip_accuracy = evaluate(clip_ann, test_loader)
    datta = make_trainable(convert(clip_ann, calibration, threshold="datta", timesteps=2, v_init=0.5),
                           surrogate="boxcar", leak=False)  # snnlab's θ/2 variant; the paper's V[0] = 0: notebook 05
    start = score(datta, test_loader, 2)
    history = train_snn(datta, train_loader, timesteps=2, epochs=args.datta_epochs, cache="datta", **rates)
    runs.append(row("Datta's fit at V[0] = θ/2 (clip ANN)", score(datta, test_loader, 2), start, history, clip_accuracy,
                    args.datta_epochs))
    results["anns"]["clip"] = {k: clip_info[k] for k in ("test_accuracy", "train_seconds", "checkpoint")}
    return results


def main(argv=None) -> None:
    args = parse_args(argv)
    began, cpu = time.perf_counter(), time.process_time()
    machine = {"cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
               "python": platform.python_version(), "load_average_before": os.getloadavg(),
               "malloc_keeps_freed_memory": keep_freed_memory()}  # as `simulate` does: bench/README.md
    ann, info = get_ann(dataset=args.dataset)
    results = {"config": vars(args), "machine": machine, **run_all(args, ann, info)}
    results["wall_seconds"], results["cpu_seconds"] = time.perf_counter() - began, time.process_time() - cpu
    results["machine"]["load_average_after"] = os.getloadavg()
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1))
    output.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
