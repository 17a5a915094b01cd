"""Notebook 07's table: accuracy and event rates of every method at every T, and their energy by any estimator.

A row is one network at one T: {"method", "family", "timesteps", "accuracy", "event_rate": {layer: r_{l−1}}}.
The table keeps the event rates, not energies, so that one table serves every estimator of `energy.py`:
    E(row) = energy.estimate(estimator, sizes, row["event_rate"], row["timesteps"])
with `sizes` (`energy.layer_sizes`) of the architecture all rows share.

Sources, merged: the compare.json that `snnlab compare` writes (conversion recipes × V[0]; QCFS when run
with --activation qcfs) and the JSON of bench/training_runs.py (DIET-SNN, IIR-SNN, direct T = 1, Datta &
Beerel; TTFS when present). Without either, `compute_table` measures a CI-size version itself: conversion
recipes × V[0] of the ANN that notebooks 01–05 train, each simulated once to T_max (every t ≤ T_max is read
from that run: a causal network's prefix is a shorter run).

Taught in notebook 07.
"""
import json
from pathlib import Path

from .convert import convert
from .energy import estimate, layer_sizes
from .simulate import Probe, evaluate_snn
from .train import evaluate, prepare

FAMILIES = (("DIET", "DIET-SNN"), ("IIR", "IIR-SNN"), ("direct", "direct T = 1"), ("Datta", "Datta & Beerel"),
            ("TTFS", "TTFS"))  # (start of a bench/training_runs.py method name, family)


def measure(snn, loader, run_steps: int, wanted: list) -> list:
    """Simulate `snn` once for `run_steps` steps inside a Probe; one row per T in `wanted` (each ≤ run_steps):
    {"timesteps", "accuracy", "spikes_per_neuron", "event_rate"}, read from the prefix t ≤ T of that run.

    spikes per neuron = Σ_l spikes_l / Σ_l (neurons_l · samples): all spikes of the network over all its
    neurons, per image.
    """
    with Probe(snn) as probe:
        accuracy = evaluate_snn(snn, loader, run_steps, progress=False)  # [run_steps]
    neurons = sum(probe.neurons[n] * probe.samples[n] for n in probe.spikes)
    return [{"timesteps": t, "accuracy": accuracy[t - 1].item(), "event_rate": probe.event_rate(t),
             "spikes_per_neuron": sum(probe.spikes[n][:t].sum().item() for n in probe.spikes) / neurons}
            for t in wanted]


def _family(method: str) -> str:
    return next((family for start, family in FAMILIES if method.startswith(start)), method)


def from_compare(result: dict) -> dict:
    """The table of a compare.json (`snnlab compare`, from this version on: rows keep their event rates)."""
    if "sizes" not in result["ann"] or any("event_rate" not in r for r in result["rows"]):
        raise ValueError("this compare.json has no event rates (written before `snnlab compare --energy`): "
                         "run `snnlab compare` again to write a new one")
    family = {"qcfs": "QCFS", "cat": "CAT"}.get(result["config"]["activation"], "conversion")
    rows = [{"method": "TTFS" if r["method"] == "ttfs" else
             (r["method"] if family == "conversion" else f"{family} {r['method']}"),
             "family": "TTFS" if r["method"] == "ttfs" else family,
             "timesteps": r["timesteps"], "accuracy": r["accuracy"], "event_rate": r["event_rate"]}
            for r in result["rows"]]
    return {"ann": {"accuracy": result["ann"]["accuracy"]}, "sizes": result["ann"]["sizes"], "rows": rows}


def from_runs(result: dict) -> list:
    """The rows of bench/training_runs.py's JSON; the rate of each layer comes from its energy table."""
    rows = []
    for r in result["runs"]:
        rates = r.get("event_rate") or {d["name"]: d["rate"] for d in r["energy_layers"]}
        family = _family(r["method"])
        rows.append({"method": family, "family": family, "timesteps": r["timesteps"], "accuracy": r["accuracy"],
                     "event_rate": rates})
    return rows


def compute_table(*, recipes: list, v_inits: list, timesteps: list, dataset: str = "cifar10",
                  model: str = "vgg-mini", epochs: int = 8, train_size=5000, calibration: int = 500,
                  test_size=300, seed: int = 0) -> dict:
    """Measure the table without JSON: every recipe × V[0] of `convert`, simulated once to max(timesteps).

    The ANN is `train.prepare`'s with these knobs (notebooks 01–05 use the same, so its cache is shared).
    """
    ann, _, calibration_images, test_loader = prepare(dataset=dataset, model=model, epochs=epochs,
                                                      train_size=train_size, calibration=calibration,
                                                      test_size=test_size, seed=seed, progress=False)
    rows = []
    for recipe in recipes:
        for v_init in v_inits:
            snn = convert(ann, calibration_images, threshold=recipe, v_init=v_init)
            rows += [{"method": f"{recipe}@{v_init:g}", "family": "conversion", **row}
                     for row in measure(snn, test_loader, max(timesteps), timesteps)]
    return {"ann": {"accuracy": evaluate(ann, test_loader)}, "sizes": layer_sizes(ann, calibration_images[:1]),
            "rows": rows, "source": f"computed: {dataset}, {len(test_loader.x)} test images"}


def load_table(compare_json=None, runs_json=None, **knobs) -> dict:
    """The table from the JSON files that exist (compare.json first, bench rows added), else `compute_table(**knobs)`.

    bench/training_runs.py's rows take their layer sizes from compare.json or, without it, from
    `compute_table`'s ANN (the same architecture: vgg-mini on the same data set).
    """
    compare, runs = (Path(p) if p is not None and Path(p).is_file() else None for p in (compare_json, runs_json))
    table = from_compare(json.loads(compare.read_text())) if compare else compute_table(**knobs)
    if runs:
        table["rows"] += from_runs(json.loads(runs.read_text()))
    table["source"] = ", ".join(str(p) for p in (compare, runs) if p) or table["source"]
    return table


def points(table: dict, estimator: str, timesteps: int, methods=None) -> list:
    """Each method's row with the largest T ≤ `timesteps`, with its `energy.estimate` as "energy".

    Args:
        table: `load_table`'s. estimator: "compute", "memory" or "qnn". methods: the labels to keep (None: all).
    """
    best = {}
    for row in table["rows"]:
        wanted = row["timesteps"] <= timesteps and (methods is None or row["method"] in methods)
        if wanted and row["timesteps"] > best.get(row["method"], {"timesteps": 0})["timesteps"]:
            best[row["method"]] = row
    return [{**row, "energy": estimate(estimator, table["sizes"], row["event_rate"], row["timesteps"])}
            for row in best.values()]


def pareto(points: list) -> list:
    """The points no other point beats in both energy (lower E_SNN/E_ANN) and accuracy, by rising energy."""
    ordered = sorted(points, key=lambda p: (p["energy"].snn_pj / p["energy"].ann_pj, -p["accuracy"]))
    front, best = [], float("-inf")
    for p in ordered:
        if p["accuracy"] > best:
            front.append(p)
            best = p["accuracy"]
    return front
