"""Tests of notebook 07's table (tradeoff.py), its figure (viz/tradeoff.py) and app (widgets.tradeoff_app)."""
import json

import pytest

from snnlab import energy, tradeoff, widgets
from snnlab.convert import convert
from snnlab.simulate import evaluate_snn
from snnlab.train import prepare

SIZES = {"fc1": {"macs": 12, "weights": 12, "inputs": 4, "outputs": 3},
         "fc2": {"macs": 6, "weights": 6, "inputs": 3, "outputs": 2}}


def row(method, timesteps, accuracy, rate):
    return {"method": method, "family": "conversion", "timesteps": timesteps, "accuracy": accuracy,
            "event_rate": {"fc1": 1.0, "fc2": rate}}


TABLE = {"ann": {"accuracy": 90.0}, "sizes": SIZES, "source": "by hand",
         "rows": [row("a", 1, 60.0, 0.5), row("a", 4, 80.0, 2.0), row("b", 2, 70.0, 0.2), row("b", 8, 85.0, 6.0),
                  row("c", 4, 50.0, 3.0)]}


@pytest.fixture(scope="module")
def digits_table(tmp_path_factory):
    """A table measured on digits in a throw-away cache, and the setup it used."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("SNNLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        knobs = dict(dataset="digits", epochs=1, train_size=None, calibration=200, test_size=100, seed=0)
        table = tradeoff.compute_table(recipes=["max"], v_inits=[0.0, 0.5], timesteps=[1, 2, 4], **knobs)
        yield table, prepare(**knobs, progress=False)


def test_points_take_each_methods_largest_t_and_the_estimators_energy():
    shown = {p["method"]: p for p in tradeoff.points(TABLE, "memory", 4)}
    assert {m: p["timesteps"] for m, p in shown.items()} == {"a": 4, "b": 2, "c": 4}
    expected = energy.memory(SIZES, {"fc1": 1.0, "fc2": 0.2}, 2)
    assert shown["b"]["energy"].snn_pj == pytest.approx(expected.snn_pj)
    assert [p["method"] for p in tradeoff.points(TABLE, "compute", 1, methods=["a", "b"])] == ["a"]


def test_pareto_front_keeps_the_points_nothing_beats():
    shown = tradeoff.points(TABLE, "compute", 8)
    front = tradeoff.pareto(shown)
    ratio = {p["method"]: p["energy"].snn_pj / p["energy"].ann_pj for p in shown}
    for p in shown:  # on the front ⇔ no other point is both cheaper (or as cheap) and more accurate
        beaten = any(ratio[q["method"]] <= ratio[p["method"]] and q["accuracy"] > p["accuracy"] for q in shown)
        assert (p in front) != beaten
    assert [p["method"] for p in front] == ["a", "b"]  # a: T = 4 at r = 2; b: T = 8 at r = 6; c is beaten by a


def test_tradeoff_app_follows_t_estimator_and_selection():
    row_, fig = widgets.tradeoff_app(TABLE, timesteps=4).children
    knobs = {c.description: c for c in row_.children}
    scatter = next(fig.select_traces(selector=dict(name="methods")))
    knobs["energy"].value = "qnn"
    knobs["time steps T ≤"].value = 2
    assert list(scatter.text) == ["a", "b"]
    expected = [energy.qnn({"fc1": 12, "fc2": 6}, {"fc1": 1.0, "fc2": r}, t) for r, t in ((0.5, 1), (0.2, 2))]
    assert list(scatter.x) == pytest.approx([e.snn_pj / e.ann_pj for e in expected])
    knobs["per layer"].value = "b"
    bars = next(fig.select_traces(selector=dict(name="SNN")))
    assert list(bars.y) == pytest.approx([d["snn_pj"] / 1e6 for d in expected[1].layers])
    knobs["methods"].value = ("a",)
    assert list(scatter.text) == ["a"] and "qnn estimate: 1 of 1" in fig.layout.title.text
    ann = next(fig.select_traces(selector=dict(name="ANN (E = 1)")))
    assert list(ann.x) == [1.0] and list(ann.y) == [90.0]


def test_computed_table_rows_equal_a_separate_run(digits_table):
    table, (ann, _, calibration, test_loader) = digits_table
    assert [(r["method"], r["timesteps"]) for r in table["rows"]] == \
        [(m, t) for m in ("max@0", "max@0.5") for t in (1, 2, 4)]
    snn = convert(ann, calibration, threshold="max", v_init=0.5)
    accuracy = evaluate_snn(snn, test_loader, 2, progress=False)  # a 2-step run equals the prefix of the 4-step one
    two = next(r for r in table["rows"] if r["method"] == "max@0.5" and r["timesteps"] == 2)
    assert two["accuracy"] == pytest.approx(accuracy[-1].item())
    assert table["sizes"] == energy.layer_sizes(ann, calibration[:1])


def test_load_table_merges_compare_and_bench_json(tmp_path):
    compare = {"config": {"activation": "qcfs"}, "ann": {"accuracy": 90.0, "sizes": SIZES},
               "rows": [{"method": "bound@0.5", "timesteps": 2, "accuracy": 75.0, "event_rate": {"fc1": 1, "fc2": 1}}]}
    runs = {"runs": [{"method": "IIR-SNN stage T = 1", "timesteps": 1, "accuracy": 70.0,
                      "energy_layers": [{"name": "fc1", "rate": 1.0}, {"name": "fc2", "rate": 0.3}]}]}
    (tmp_path / "compare.json").write_text(json.dumps(compare))
    (tmp_path / "runs.json").write_text(json.dumps(runs))
    table = tradeoff.load_table(tmp_path / "compare.json", tmp_path / "runs.json")
    assert [(r["method"], r["family"]) for r in table["rows"]] == [("QCFS bound@0.5", "QCFS"), ("IIR-SNN", "IIR-SNN")]
    assert table["rows"][1]["event_rate"] == {"fc1": 1.0, "fc2": 0.3}
    with pytest.raises(ValueError, match="no event rates"):
        tradeoff.from_compare({**compare, "ann": {"accuracy": 90.0}})


# ---------------------------------------------------------------- the facts notebook 07 states, with its knobs
@pytest.fixture(scope="module")
def notebook07():
    """Notebook 07's table as it computes it in CI (no JSON), with its knobs; the ANN of notebooks 01–05."""
    from test_notebooks import knobs  # tests/ is on sys.path (rootdir conftest)
    k = knobs("07_tradeoff.ipynb")
    shared = {key: knobs("02_conversion_error.ipynb")[key] for key in ("DATASET", "MODEL", "TRAIN_SIZE", "EPOCHS",
                                                                        "CALIBRATION", "SEED")}
    assert shared.items() <= k.items(), "notebook 07 must use notebooks 01–05's ANN knobs, so the cache is shared"
    return tradeoff.compute_table(recipes=k["RECIPES"], v_inits=k["V_INITS"], timesteps=k["TIMESTEPS"],
                                  dataset=k["DATASET"], model=k["MODEL"], epochs=k["EPOCHS"],
                                  train_size=k["TRAIN_SIZE"], calibration=k["CALIBRATION"], test_size=k["EVAL_SIZE"],
                                  seed=k["SEED"])


def ratios(table, estimator, timesteps):
    return {p["method"]: p["energy"].snn_pj / p["energy"].ann_pj for p in tradeoff.points(table, estimator, timesteps)}


@pytest.mark.cifar
def test_07_compute_puts_every_snn_under_half_the_anns_energy(notebook07):
    for timesteps in (1, 2, 4, 8):  # measured at T = 8: 0.04–0.24
        assert max(ratios(notebook07, "compute", timesteps).values()) < 0.5


@pytest.mark.cifar
def test_07_memory_makes_the_most_accurate_snns_at_t8_cost_as_much_as_the_ann(notebook07):
    memory, compute = ratios(notebook07, "memory", 8), ratios(notebook07, "compute", 8)
    best = max(tradeoff.points(notebook07, "memory", 8), key=lambda p: p["accuracy"])["method"]
    assert max(memory.values()) > 1  # measured 1.56 (p99@0.5); compute says 0.24
    assert memory[best] > 0.7 and memory[best] > 3 * compute[best]  # measured 1.56 and 6.5×
    for method in memory:  # the potentials' 2·T·N_out accesses: memory grows faster with T than compute
        assert memory[method] / ratios(notebook07, "memory", 1)[method] > \
            compute[method] / ratios(notebook07, "compute", 1)[method]


@pytest.mark.cifar
def test_07_snns_beat_the_quantized_ann_by_less_than_compute_says(notebook07):
    qnn, compute = ratios(notebook07, "qnn", 8), ratios(notebook07, "compute", 8)
    assert max(qnn.values()) < 1  # measured 0.07–0.57
    assert all(qnn[m] > compute[m] for m in qnn)


def test_07_break_even_rate_is_one_plus_b_over_4():
    for timesteps, rate in ((1, 1.25), (4, 1.75), (6, 1.75)):
        bits = energy.activation_bits(timesteps)
        at = energy.qnn({"a": 1, "b": 100}, {"a": 1.0, "b": rate}, timesteps).layers[1]
        assert at["snn_pj"] == pytest.approx(at["ann_pj"]) and rate == 1 + bits / 4
