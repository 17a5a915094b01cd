"""tests for reproduce.py: every paper config is valid (a 1-batch dry run on the CPU), --list, and config errors."""
import json

import pytest

from snnlab import cli, reproduce

NAMES = reproduce.config_names()


def test_one_config_per_headline_row():
    rows = {(c["snn"]["method"], c["dataset"], c["model"]) for c in map(reproduce.load_config, NAMES)}
    assert rows == {("convert", "cifar10", "vgg16"), ("diet", "cifar10", "vgg16"), ("iir", "cifar10", "vgg16"),
                    ("datta", "cifar100", "vgg16"), ("ttfs", "cifar10", "vgg16")}
    steps = {reproduce.load_config(n)["snn"]["method"]: reproduce.load_config(n)["snn"].get("timesteps") for n in NAMES}
    assert steps["convert"] == 4 and steps["diet"] == 5 and steps["iir"][-1] == 1 and steps["datta"] == 2


def test_list_names_each_config_with_its_papers_number(capsys):
    assert cli.main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert f"{reproduce.load_config(name)['paper_accuracy']:.2f} %" in line


@pytest.mark.parametrize("name", NAMES)
def test_every_config_runs_one_batch_on_the_cpu(name, tmp_path, monkeypatch):
    monkeypatch.setenv("SNNLAB_CACHE", str(tmp_path))
    config = reproduce.load_config(name)
    result = reproduce.run(config, dry_run=True, progress=False)
    assert result["dry_run"] and result["device"] == "cpu" and result["world_size"] == 1
    assert 0 <= result["ann_accuracy"] <= 100 and result["snn"]
    wanted = config["snn"].get("timesteps", config["ann"].get("levels"))  # TTFS: T = K, the CAT window
    assert [row["timesteps"] for row in result["snn"]] == (wanted if isinstance(wanted, list) else [wanted])
    assert not list(tmp_path.glob("runs/**/*.pt"))  # a dry run writes no checkpoint



def test_unknown_config_lists_the_known_ones(capsys):
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "no-such-config", "--dry-run"])
    assert NAMES[0] in capsys.readouterr().err


def test_percentile_names_resolve():
    assert reproduce.recipe("p95").keywords == {"p": 95.0}
    assert reproduce.recipe("max") == "max" and reproduce.recipe("p90") == "p90"  # IIR-SNN's, in convert.RECIPES


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("ann"), "missing key 'ann'"),
    (lambda c: c["snn"].update(method="magic"), "snn.method = 'magic'"),
    (lambda c: c["snn"].update(threshold="p-1"), "unknown threshold recipe"),
    (lambda c: c["snn"].update(timesteps=0), "snn.timesteps"),
])
def test_bad_configs_are_refused_naming_the_file_and_key(tmp_path, change, message):
    config = json.loads((reproduce.CONFIG_DIR / f"{NAMES[0]}.json").read_text())
    change(config)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message) as error:
        reproduce.load_config(str(path))
    assert "bad.json" in str(error.value)
