"""Tests of snnlab.exercises: every checker with a right answer, wrong ones (near and far: graded hints) and None.

The right answers are computed here by hand (closed forms, loops, grids scored with `simulate`), not by the checker.
"""
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from snnlab import exercises
from snnlab.activations import CAT
from snnlab.convert import (
    adjusted,
    convert,
    fold_batchnorm,
    percentile_threshold,
    record_preactivations,
)
from snnlab.energy import E_AC_PJ, E_MAC_PJ
from snnlab.simulate import Probe, simulate
from snnlab.train import prepare
from snnlab.train_snn import diet_init, score


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A 3-epoch digits ANN, 200 calibration images, 120 test images with labels (in a throw-away cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SNNLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        ann, _, calibration, test_loader = prepare(dataset="digits", epochs=3, calibration=200, test_size=120,
                                                   batch_size=120, progress=False)
    return {"ann": ann, "calibration": calibration, "images": test_loader.x, "labels": test_loader.y}


def accuracy(snn, data, timesteps):
    return 100 * (simulate(snn, data["images"], timesteps)[-1].argmax(-1) == data["labels"]).float().mean().item()


def staircase(z, threshold, timesteps, v_init):
    return threshold / timesteps * torch.clamp(torch.floor((timesteps * z + v_init * threshold) / threshold), 0, timesteps)


def spikes_by_hand(current, threshold, timesteps, v, hard=False):
    count = 0
    for _ in range(timesteps):
        v += current
        if v >= threshold:
            count, v = count + 1, (0.0 if hard else v - threshold)
    return count


def cat_net(window=8):
    """A random CAT MLP (no BN), eval mode, with 400 inputs labelled by its own answers (its accuracy: 100 %)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 32), CAT(window, 1.5), nn.Linear(32, 24), CAT(window, 0.8), nn.Linear(24, 5)).eval()
    x = torch.randn(400, 6)
    return net, x, net(x).argmax(1)


def contexts(digits):
    """The context each exercise's notebook cell passes, built from the digits network."""
    ann, calibration = digits["ann"], digits["calibration"]
    half = convert(ann, calibration, threshold="percentile", v_init=0.5)
    zero = convert(ann, calibration, threshold="percentile", v_init=0.0)
    data = {"images": digits["images"], "labels": digits["labels"]}
    one_step = diet_init(ann, calibration, scale=0.5)
    return {
        "00.1": {"current": 0.3, "threshold": 1.0, "timesteps": 8}, "00.2": {},
        "00.3": {"current": 0.45, "threshold": 1.0, "timesteps": 8},
        "01.1": {"records": record_preactivations(fold_batchnorm(ann), calibration, max_samples=5000)},
        "01.2": dict(model=ann, calibration=calibration, timesteps=1, **data),
        "02.1": dict(snn=half, timesteps=2, **data), "02.2": {},
        "03.1": {}, "03.2": dict(snn=half, timesteps=4, **data),
        "03.3": {"snn": zero, "images": digits["images"], "timesteps": 8},
        "04.1": {"report": score(one_step, [(digits["images"], digits["labels"])], 5)["energy"]},
        "04.2": dict(ann=ann, calibration=calibration, timesteps=5, **data),
        "05.1": {}, "05.2": {"snn": one_step, "images": digits["images"]},
        "06.1": {"value": 0.3, "bound": 1.0, "window": 8}, "06.2": {},
        "06.3": dict(zip(("ann", "images", "labels"), cat_net())), "07.1": {}, "07.2": {"timesteps": 8},
    }


@pytest.fixture(scope="module")
def context(digits):
    return contexts(digits)


def test_every_exercise_reports_none_as_not_answered(context):
    assert sorted(context) == sorted(exercises.CHECKERS)
    for exercise_id, kwargs in context.items():
        result = exercises.check(exercise_id, None, **kwargs)
        assert result.correct is None and "not answered yet" in str(result)


def test_unknown_exercise_and_missing_context_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown exercise '09.9'.*'00.1'"):
        exercises.check("09.9", 1)
    with pytest.raises(ValueError, match=r"exercise 00.1 takes the context \['current', 'threshold', 'timesteps'\]"):
        exercises.check("00.1", None, current=0.3)


def test_result_prints_its_verdict():
    result = exercises.check("00.1", 2, current=0.3, threshold=1.0, timesteps=8)
    assert result.correct is True and str(result).startswith("Exercise 00.1: ✅ right")
    assert result._repr_markdown_() == repr(result) == str(result)


@pytest.mark.parametrize("exercise_id, current, v_init, hard", [("00.1", 0.3, 0.5, False), ("00.3", 0.45, 0.0, True)])
def test_spike_counts_are_graded_by_distance(exercise_id, current, v_init, hard):
    kwargs = {"current": current, "threshold": 1.0, "timesteps": 8}
    truth = spikes_by_hand(current, 1.0, 8, v_init, hard)
    assert exercises.check(exercise_id, truth, **kwargs).correct is True
    assert exercises.check(exercise_id, float(truth), **kwargs).correct is True  # 2.0 is a whole number
    near, far = exercises.check(exercise_id, truth + 1, **kwargs), exercises.check(exercise_id, truth + 4, **kwargs)
    assert near.correct is far.correct is False
    assert "too many" in near.message and "Nearly" in near.message and "Nearly" not in far.message
    bad = exercises.check(exercise_id, "two", **kwargs)
    assert bad.correct is False and "must be a number" in bad.message
    assert "whole number" in exercises.check(exercise_id, 2.5, **kwargs).message


def test_clip_floor_formula():
    right = exercises.check("00.2", staircase)
    assert right.correct is True and "all 12 test cases" in right.message
    unbounded = exercises.check("00.2", lambda z, th, t, v: th / t * torch.floor((t * z + v * th) / th))
    assert unbounded.correct is False and "negative z" in unbounded.message
    no_start = exercises.check("00.2", lambda z, th, t, v: staircase(z, th, t, 0.0))
    assert "V[0] = 0.5·θ" in no_start.message
    far = exercises.check("00.2", lambda z, th, t, v: z)
    assert far.correct is False and "Start from the spike count" in far.message
    assert "raised ZeroDivisionError" in exercises.check("00.2", lambda z, th, t, v: 1 / 0).message
    assert "must be a function" in exercises.check("00.2", 0.25).message
    assert "returned shape ()" in exercises.check("00.2", lambda z, th, t, v: 0.0).message


def test_percentile_formula(context):
    records = context["01.1"]["records"]
    right = exercises.check("01.1", lambda z, p: torch.quantile(z[z > 0], p / 100), records=records)
    assert right.correct is True
    every_z = exercises.check("01.1", lambda z, p: torch.quantile(z, p / 100), records=records)
    assert every_z.correct is False and "only the values ReLU passes on" in every_z.message
    far = exercises.check("01.1", lambda z, p: z.max(), records=records)
    assert far.correct is False and "torch.quantile" in far.message


def best_and_worst(scores: dict):
    best = max(scores, key=scores.get)
    worst = min(scores, key=scores.get)
    assert scores[best] - scores[worst] > 12, scores  # the grid must hold a clearly wrong setting
    return best, worst


def test_percentile_knob(digits, context):
    kwargs = context["01.2"]
    scores = {p: accuracy(convert(digits["ann"], digits["calibration"], v_init=0.5, timesteps=1, max_samples=50_000,
                                  threshold=lambda r, t, v, p=p: percentile_threshold(r, t, v, p=p)), digits, 1)
              for p in [50.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.9, 100.0]}
    best, worst = best_and_worst(scores)
    assert exercises.check("01.2", best, **kwargs).correct is True
    wrong = exercises.check("01.2", worst, **kwargs)
    assert wrong.correct is False and f"{scores[best]:.1f} %" in wrong.message
    assert "must lie in" in exercises.check("01.2", 120, **kwargs).message


def test_threshold_scale_knob(digits, context):
    kwargs = context["02.1"]
    scores = {round(0.1 * i, 2): accuracy(adjusted(kwargs["snn"], threshold_scale=0.1 * i), digits, 2)
              for i in range(1, 16)}
    best, worst = best_and_worst(scores)
    assert exercises.check("02.1", best, **kwargs).correct is True
    wrong = exercises.check("02.1", worst, **kwargs)
    assert wrong.correct is False and f"threshold_scale = {worst:g} gives {scores[worst]:.1f} %" in wrong.message


def test_quantization_formula():
    def right(z, th, t, v):
        return torch.clamp(z, 0, th) - staircase(z, th, t, v)

    assert exercises.check("02.2", right).correct is True
    flipped = exercises.check("02.2", lambda z, th, t, v: -right(z, th, t, v))
    assert flipped.correct is False and "sign is flipped" in flipped.message
    with_clipping = exercises.check("02.2", lambda z, th, t, v: torch.relu(z) - staircase(z, th, t, v))
    assert "above θ the loss belongs to clipping" in with_clipping.message
    assert "clipped ANN activation" in exercises.check("02.2", lambda z, th, t, v: z * 0).message


def test_expected_error_formula():
    def right(t, th, v):
        return th / t * (v - 0.5), (th / t) ** 2 * ((1 - v) ** 3 + v**3) / 3

    assert exercises.check("03.1", right).correct is True
    sign = exercises.check("03.1", lambda t, th, v: (-right(t, th, v)[0], right(t, th, v)[1]))
    assert "wrong sign" in sign.message
    variance_only = exercises.check("03.1", lambda t, th, v: (right(t, th, v)[0], (th / t) ** 2 / 12))
    assert variance_only.correct is False and "the mean is right" in variance_only.message
    assert "one step θ/T wide" in exercises.check("03.1", lambda t, th, v: (1.0, 1.0)).message


def test_v_init_knob(digits, context):
    kwargs = context["03.2"]
    scores = {i / 20: accuracy(adjusted(kwargs["snn"], v_init=i / 20), digits, 4) for i in range(21)}
    best, worst = best_and_worst(scores)
    assert exercises.check("03.2", best, **kwargs).correct is True
    assert exercises.check("03.2", worst, **kwargs).correct is False
    assert "must lie in [0, 1]" in exercises.check("03.2", 1.5, **kwargs).message


def test_first_spike_step(context):
    kwargs = context["03.3"]
    with Probe(kwargs["snn"]) as probe:
        simulate(kwargs["snn"], kwargs["images"], 8)
    last = list(probe.spikes.values())[-1]
    truth = int(torch.nonzero(last > 0)[0]) + 1
    assert exercises.check("03.3", truth, **kwargs).correct is True
    assert "Nearly" in exercises.check("03.3", truth + 1, **kwargs).message
    assert "too few" in exercises.check("03.3", max(truth - 3, 0), **kwargs).message


def test_energy_formula(context):
    kwargs = context["04.1"]

    def right(macs, rates, timesteps):
        names = list(macs)
        return macs[names[0]] * E_MAC_PJ + sum(macs[n] * rates[n] * E_AC_PJ for n in names[1:])

    assert exercises.check("04.1", right, **kwargs).correct is True
    ann = exercises.check("04.1", lambda m, r, t: sum(m.values()) * E_MAC_PJ, **kwargs)
    assert ann.correct is False and "the ANN's energy" in ann.message
    every_step = exercises.check("04.1", lambda m, r, t: right(m, r, t) + (t - 1) * next(iter(m.values())) * E_MAC_PJ,
                                 **kwargs)
    assert "computed once" in every_step.message
    all_ac = exercises.check("04.1", lambda m, r, t: sum(m[n] * r[n] * E_AC_PJ for n in m), **kwargs)
    assert "it multiplies" in all_ac.message
    assert "Charge each layer" in exercises.check("04.1", lambda m, r, t: 1.0, **kwargs).message


def test_diet_scale_knob(digits, context):
    kwargs = context["04.2"]
    scores = {s: accuracy(diet_init(digits["ann"], digits["calibration"], scale=s), digits, 5)
              for s in [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0]}
    best, worst = best_and_worst(scores)
    assert exercises.check("04.2", best, **kwargs).correct is True
    assert exercises.check("04.2", worst, **kwargs).correct is False


def test_knob_hints_get_specific_when_close():
    def accuracy(s):  # a peak of 80 % at s = 0.4
        return 80 - 100 * abs(s - 0.4)

    def grade(answer):
        return exercises._knob("x", answer, "s", [0.2, 0.4, 0.6, 0.8], accuracy, 0.0, 1.0, "Think about it.")

    assert grade(0.42).correct is True and "within 3 points of the best of 4 settings tried (80.0 %)" in grade(0.42).message
    close, far = grade(0.5), grade(0.9)
    assert close.correct is far.correct is False
    assert "try a smaller value" in close.message and "Think about it." not in close.message
    assert "Think about it." in far.message and "smaller" not in far.message and "0.4" not in far.message
    assert "try a larger value" in grade(0.3).message


def test_one_step_formula():
    assert exercises.check("05.1", lambda z, th: (z >= th).double()).correct is True
    strict = exercises.check("05.1", lambda z, th: (z > th).double())
    assert strict.correct is False and "Θ(0) = 1" in strict.message
    carries_theta = exercises.check("05.1", lambda z, th: (z >= th).double() * th)
    assert "spikes carry 1" in carries_theta.message
    assert "H[1] is just X[1]" in exercises.check("05.1", lambda z, th: torch.relu(z)).message


def test_binary_network_disagreement(context):
    kwargs = context["05.2"]
    assert exercises.check("05.2", 0, **kwargs).correct is True  # the T = 1 SNN is the binary network, exactly
    far = exercises.check("05.2", 10, **kwargs)
    assert far.correct is False and "too many" in far.message and "Write H[1]" in far.message
    assert "must lie in" in exercises.check("05.2", -1, **kwargs).message
    assert not math.isnan(kwargs["images"].sum().item())


def solution_code(exercise_id: str) -> str:
    """The python block of the <details> solution under exercise `exercise_id` in its notebook."""
    notebook = next(Path("notebooks").glob(f"{exercise_id[:2]}_*.ipynb"))
    cells = [cell["source"] for cell in json.loads(notebook.read_text())["cells"]]
    text = ["".join(c) if isinstance(c, list) else c for c in cells]
    question = next(i for i, c in enumerate(text) if c.startswith(f"**{exercise_id} ·"))
    solution = text[question + 2]
    assert solution.startswith("<details><summary>Solution"), solution
    return solution.split("```python\n")[1].split("```")[0]


@pytest.mark.parametrize("exercise_id, name", [("00.2", "rate"), ("01.1", "threshold"), ("02.2", "quantization"),
                                               ("03.1", "expected"), ("04.1", "e_snn"), ("05.1", "output"),
                                               ("06.2", "value"), ("07.1", "e_qnn")])
def test_the_notebooks_worked_solutions_are_right(context, exercise_id, name):
    namespace = {"torch": torch, "math": math, "E_MAC_PJ": E_MAC_PJ, "E_AC_PJ": E_AC_PJ}
    exec(solution_code(exercise_id), namespace)  # noqa: S102 (the notebook's own solution text)
    assert exercises.check(exercise_id, namespace[name], **context[exercise_id]).correct is True


@pytest.mark.parametrize("value, bound, window", [(0.3, 1.0, 8), (1.7, 2.0, 4), (0.04, 1.0, 4), (5.0, 2.0, 3)])
def test_ttfs_spike_step(value, bound, window):
    kwargs = {"value": value, "bound": bound, "window": window}
    thresholds = [bound * 2 ** (-k - 0.5) for k in range(window)]  # θ[k] halves every step from s·2^(−½)
    truth = next((k for k, theta in enumerate(thresholds) if value >= theta), -1)
    assert exercises.check("06.1", truth, **kwargs).correct is True
    near = exercises.check("06.1", truth + 1, **kwargs)
    assert near.correct is False and "Nearly" in near.message
    assert "halves every step" in exercises.check("06.1", truth + 3, **kwargs).message
    assert "must lie in" in exercises.check("06.1", -2, **kwargs).message


def ttfs_value(a, bound, window, offset=0.5):
    """The value one TTFS spike carries for potential a, by hand: s·2^(−k) at the first k with a ≥ s·2^(−k−½)."""
    out = torch.zeros_like(a)
    for k in reversed(range(window)):  # the earliest step that fires wins
        out = torch.where(a >= bound * 2 ** (-k - offset), bound * 2.0**-k, out)
    return out


def test_ttfs_value_formula():
    assert exercises.check("06.2", ttfs_value).correct is True
    no_clip = exercises.check("06.2", lambda a, s, k: torch.where(a > s, a, ttfs_value(a, s, k)))
    assert no_clip.correct is False and "carries at most s" in no_clip.message
    lowest = exercises.check("06.2", lambda a, s, k: torch.where(a > 0, ttfs_value(a.clamp(min=s * 2.0 ** (1 - k)), s, k), 0))
    assert lowest.correct is False and "it is silent" in lowest.message
    floor = exercises.check("06.2", lambda a, s, k: ttfs_value(a, s, k, offset=0.0))  # rounds down, not to the nearest
    assert floor.correct is False and "Find the step k" in floor.message


def test_window_knob(context):
    kwargs = context["06.3"]
    net, x, y = kwargs["ann"], kwargs["images"], kwargs["labels"]

    def accuracy(window):  # the CAT ANN with its levels set to K is its TTFS network at window K
        copy = nn.Sequential(*[CAT(window, m.bound.item()) if isinstance(m, CAT) else m for m in net])
        return 100 * (copy(x).argmax(1) == y).float().mean().item()

    truth = next(k for k in range(1, 9) if accuracy(k) >= 99.0)
    assert 1 < truth <= 8
    assert exercises.check("06.3", truth, **kwargs).correct is True
    assert "Nearly" in exercises.check("06.3", truth - 1, **kwargs).message
    assert "too many" in exercises.check("06.3", truth + 3, **kwargs).message


def qnn_by_hand(macs, timesteps):
    bits = math.ceil(math.log2(timesteps + 1))
    energies = [f * (0.2 * (8 if i == 0 else bits) * 8 / 64 + 0.1) for i, f in enumerate(macs.values())]
    return sum(energies)


def test_qnn_formula():
    assert exercises.check("07.1", qnn_by_hand).correct is True
    float_ann = exercises.check("07.1", lambda m, t: sum(m.values()) * E_MAC_PJ)
    assert float_ann.correct is False and "float ANN" in float_ann.message
    all_b = exercises.check("07.1", lambda m, t: sum(m.values()) * (0.2 * math.ceil(math.log2(t + 1)) / 8 + 0.1))
    assert "8-bit image" in all_b.message
    log_t = exercises.check("07.1", lambda m, t: qnn_by_hand(m, max(t - 1, 0)) if t > 1 else qnn_by_hand(m, 0))
    assert "T + 1 values" in log_t.message
    assert "Charge each MAC" in exercises.check("07.1", lambda m, t: 1.0).message


@pytest.mark.parametrize("timesteps", [1, 4, 8, 16])
def test_break_even_rate(timesteps):
    bits = math.ceil(math.log2(timesteps + 1))
    truth = (0.2 * bits * 8 / 64 + 0.1) / 0.1  # E_MAC(b) = r·E_ADD32: 1 + b/4
    assert truth == pytest.approx(1 + bits / 4)
    assert exercises.check("07.2", truth, timesteps=timesteps).correct is True
    near = exercises.check("07.2", truth * 1.1, timesteps=timesteps)
    assert near.correct is False and "too high" in near.message and "Nearly" in near.message
    far = exercises.check("07.2", 10 * truth, timesteps=timesteps)
    assert "equate" in far.message and "Nearly" not in far.message
