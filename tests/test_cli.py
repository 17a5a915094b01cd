"""tests for cli.py: `snnlab compare` end to end on digits, its reports, and its errors."""
import json
import subprocess
import sys

import pytest
import torch

from snnlab import cli, data, energy
from snnlab.convert import convert
from snnlab.simulate import Probe, evaluate_snn
from snnlab.train import prepare

ARGS = ["compare", "--dataset", "digits", "--epochs", "1", "--methods", "max@0,mse@0.5",
        "--timesteps", "1,2,4", "--calibration", "200", "--batch-size", "128"]


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    """One small `snnlab compare` run on digits in a throw-away cache: (stdout, result dict, output folder)."""
    root = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("SNNLAB_CACHE", str(root / "cache"))
        out = root / "reports"
        code = cli.main(ARGS + ["--output", str(out)])
        yield code, json.loads((out / "compare.json").read_text()), out


def test_compare_prints_one_table_with_every_row(compare_run, capsys):
    code, result, _ = compare_run
    assert code == 0
    table = cli.format_table(result).splitlines()
    assert any(line.startswith("ANN ") for line in table)
    for method in ("max@0", "mse@0.5"):
        for steps in (1, 2, 4):
            assert sum(line.split()[:2] == [method, str(steps)] for line in table) == 1
    assert result["command"].startswith("snnlab compare --dataset digits")


def test_compare_json_is_consistent(compare_run):
    _, result, _ = compare_run
    assert 0 <= result["ann"]["accuracy"] <= 100 and result["ann"]["energy_uj"] > 0
    assert [(r["method"], r["timesteps"]) for r in result["rows"]] == \
        [(m, t) for m in ("max@0", "mse@0.5") for t in (1, 2, 4)]
    for row in result["rows"]:
        assert 0 <= row["accuracy"] <= 100
        assert row["spikes_per_neuron"] >= 0 and row["energy_vs_ann"] > 0
        assert row["energy_uj"] == pytest.approx(row["energy_vs_ann"] * result["ann"]["energy_uj"])
    spikes = [r["spikes_per_neuron"] for r in result["rows"] if r["method"] == "max@0"]
    assert spikes == sorted(spikes)  # read from one run: spikes can only add up over steps
    assert result["torch_version"] == torch.__version__ and result["timings"]["total_s"] > 0


def test_one_pass_rows_equal_a_separate_run_at_each_t(compare_run, tmp_path, monkeypatch):
    """max@0 is simulated once to T = 4; its T = 2 row must equal a fresh 2-step run and Probe."""
    _, result, out = compare_run
    monkeypatch.setenv("SNNLAB_CACHE", str(out.parent / "cache"))
    ann, _, calibration, test_loader = prepare(dataset="digits", epochs=1, calibration=200, batch_size=128,
                                               progress=False)  # the setup `snnlab compare` makes
    snn = convert(ann, calibration, threshold="max", timesteps=2, v_init=0.0)
    with Probe(snn) as probe:
        accuracy = evaluate_snn(snn, test_loader, 2, progress=False)
    spikes = sum(s.sum().item() for s in probe.spikes.values()) / \
        sum(probe.neurons[n] * probe.samples[n] for n in probe.spikes)
    row = next(r for r in result["rows"] if r["method"] == "max@0" and r["timesteps"] == 2)
    assert row["accuracy"] == pytest.approx(accuracy[-1].item())
    assert row["spikes_per_neuron"] == pytest.approx(spikes)


def test_energy_option_picks_the_estimator_and_json_holds_all_three(compare_run, tmp_path, monkeypatch, capsys):
    """--energy qnn: the table's E/E_ANN is the qnn estimate of the row's event rates (energy.qnn by hand)."""
    _, result, out = compare_run
    sizes = result["ann"]["sizes"]
    for row in result["rows"]:  # default compute; every estimator recomputed from the stored rates
        assert row["energy_vs_ann"] == pytest.approx(row["energies"]["compute"]["snn_uj"] /
                                                     row["energies"]["compute"]["ann_uj"])
        for name in energy.ESTIMATORS:
            report = energy.estimate(name, sizes, row["event_rate"], row["timesteps"])
            assert row["energies"][name]["snn_uj"] == pytest.approx(report.snn_pj / 1e6)
    monkeypatch.setenv("SNNLAB_CACHE", str(out.parent / "cache"))
    args = ARGS[:ARGS.index("--methods")] + ["--methods", "max@0", "--timesteps", "4", "--calibration", "200",
                                             "--energy", "qnn", "--output", str(tmp_path)]
    assert cli.main(args) == 0
    qnn_run = json.loads((tmp_path / "compare.json").read_text())
    row = qnn_run["rows"][0]
    macs = {n: s["macs"] for n, s in sizes.items()}
    report = energy.qnn(macs, row["event_rate"], 4)  # b = 3-bit activations
    assert row["energy_vs_ann"] == pytest.approx(report.snn_pj / report.ann_pj)
    assert qnn_run["command"].endswith("--energy qnn")
    assert "estimator qnn" in capsys.readouterr().out


def test_compare_html_is_self_contained(compare_run):
    _, _, out = compare_run
    html = (out / "compare.html").read_text()
    inlined = "plotly.js v" in html and '<script src="http' not in html  # no script fetched from the web
    assert inlined and len(html) > 1_000_000
    assert ("Accuracy vs time steps" in html) and ("max@0" in html)


@pytest.mark.parametrize("bad, message", [
    (["--methods", "maxx@0"], "percentile"),  # lists the valid recipes
    (["--methods", "max@2"], "[0, 1]"),
    (["--methods", "bound@0.5"], "--activation clip"),
    (["--timesteps", "0,4"], "integers ≥ 1"),
    (["--timesteps", "two"], "integers ≥ 1"),
    (["--timesteps", "1,100000"], "--timesteps: T = 100000 is above the limit of 1024: all T steps of a batch are "
                                  "simulated at once, so memory grows with T × --batch-size"),
    (["--seed", "-1"], "--seed must be an integer from 0 to 2**32 − 1 (NumPy's range), got -1"),
    (["--output", __file__], f"--output {__file__!r} is an existing file; name a folder"),
])
def test_bad_options_exit_with_a_clear_message(bad, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", "--dataset", "digits"] + bad)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "snnlab compare: error: " in err and message in err


def _offline(name, root):
    raise OSError("no network")


@pytest.mark.parametrize("dataset, options, environment, message", [
    ("digits", ["--calibration", "5000"], {},
     "--calibration 5000 is more than the 1437 training images of digits: pass at most 1437"),
    ("digits", ["--train-size", "5000"], {}, "--train-size 5000 is more than the 1437 training images of digits"),
    ("cifar10", [], {"SNNLAB_DATA": None}, "could not download cifar10 into"),  # offline, no data
    ("cifar10", [], {"SNNLAB_DATA": "broken"}, "cifar10_10k.npz (ValueError: "),
    ("cifar10", [], {"SNNLAB_DATA": "missing"}, "SNNLAB_DATA="),
])
def test_missing_or_broken_data_is_one_error_line(tmp_path, monkeypatch, capsys, dataset, options, environment,
                                                  message):
    monkeypatch.setenv("SNNLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: False)
    monkeypatch.setattr(data, "_download_torchvision", _offline)
    if "SNNLAB_DATA" in environment:
        monkeypatch.delenv("SNNLAB_DATA", raising=False)
        if environment["SNNLAB_DATA"] is not None:
            monkeypatch.setenv("SNNLAB_DATA", str(tmp_path / environment["SNNLAB_DATA"]))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "cifar10_10k.npz").write_bytes(b"garbage")
    assert cli.main(["compare", "--dataset", dataset, "--epochs", "1", "--output", str(tmp_path / "out")] + options) == 2
    err = capsys.readouterr().err
    assert err.startswith("snnlab: error: ") and message in err and err.count("\n") == 1  # no traceback
    assert not (tmp_path / "out").exists()


def test_parse_method_and_timesteps():
    assert cli.parse_method("mse@optimal") == cli.Method("mse", "optimal")
    assert cli.parse_method("max").label == "max@0.5"
    assert not cli.parse_method("percentile@0").fits_timesteps
    assert cli.parse_method("datta@0.5").fits_timesteps and cli.parse_method("max@optimal").fits_timesteps
    assert cli.parse_timesteps("8,1,4,8") == [1, 4, 8]
    with pytest.raises(ValueError, match="bound, datta, max"):
        cli.parse_methods("max@0,nope")


def test_module_help_runs():
    done = subprocess.run([sys.executable, "-m", "snnlab", "compare", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--timesteps" in done.stdout
