"""The notebooks' exercises, checked: `check("02.1", answer, **context)` recomputes the truth with the library.

Every notebook ends with 2–3 exercises of three kinds (notebook.number):

    predict, then check   a number worked out by hand (a spike count, a step)  00.1 00.3 03.3 05.2 06.1 07.2
    write the formula     a Python function, checked on a grid of inputs        00.2 01.1 02.2 03.1 04.1 05.1 06.2 07.1
    find the knob         a setting (θ scale, p, V[0], window K), scored        01.2 02.1 03.2 04.2 06.3

Nothing here stores an answer: each checker recomputes it with the library (`neurons.clip_floor`, `ttfs.encode`,
`energy.qnn`, `simulate.simulate`, …) from the context (keyword arguments) the notebook passes. A wrong answer
gets a hint graded by how close it is, never the answer itself; `answer = None` reports "not answered yet" (so
an unanswered notebook runs green). The worked solutions sit in a collapsed <details> block under each exercise.
To add one: write `_name(exercise, answer, *, context…) -> Result` (`_predicted`, `_formula` and `_knob` grade
the three kinds) and add it to `CHECKERS`.
Reference: issue 15; notebooks 00–07 (section "Exercises").
"""
import inspect
import itertools
import math
import numbers
from dataclasses import dataclass
from functools import partial

import torch

from .analysis import decompose, expected_error, first_spike_step
from .convert import adjusted, convert, percentile_threshold
from .energy import E_AC_PJ, E_MAC_PJ, energy_report, int_mac_pj, qnn
from .neurons import Neuron, clip_floor, encode
from .simulate import Probe, simulate
from .train_snn import binary_network, diet_init
from .ttfs import NO_SPIKE, convert_ttfs, decode
from .ttfs import encode as ttfs_encode


@dataclass
class Result:
    """The verdict on one answer: `correct` is True, False, or None (not answered yet)."""

    exercise: str
    correct: bool | None
    message: str

    def __str__(self) -> str:
        mark = {True: "✅ right", False: "❌ not yet", None: "… not answered yet"}[self.correct]
        return f"Exercise {self.exercise}: {mark}. {self.message}"

    __repr__ = _repr_markdown_ = __str__


def check(exercise_id: str, answer, **context) -> Result:
    """Check `answer` to exercise `exercise_id` ("00.1", …) against the library; context = the notebook's objects.

    Returns a `Result` (one line, also in Jupyter; `answer=None`: correct=None). Raises ValueError for an unknown
    exercise or missing/unknown context (a notebook bug, not a wrong answer).
    """
    if exercise_id not in CHECKERS:
        raise ValueError(f"unknown exercise {exercise_id!r}; the exercises are {sorted(CHECKERS)}")
    checker = CHECKERS[exercise_id]
    try:
        inspect.signature(checker).bind(exercise_id, answer, **context)
    except TypeError as err:
        needed = [p for p in inspect.signature(checker).parameters if p not in ("exercise", "answer")]
        raise ValueError(f"exercise {exercise_id} takes the context {needed}, got {sorted(context)} ({err}): "
                         "pass them as keywords, e.g. check(..., snn=snn)") from err
    if answer is None:
        return Result(exercise_id, None, "Replace `answer = None` by your answer and run the cell again.")
    return checker(exercise_id, answer, **context)


# ---------------------------------------------------------------- shared pieces
class _BadAnswer(Exception):
    """An answer of the wrong type or range: the message says what to pass."""


def _number(answer, what: str, integer: bool = False, low: float = -math.inf, high: float = math.inf) -> float:
    """`answer` as a number in [low, high] (an integer if asked), else _BadAnswer naming what was expected."""
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = answer.item()
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real) or not math.isfinite(answer):
        raise _BadAnswer(f"the answer must be a number ({what}), got {type(answer).__name__} {answer!r}")
    if integer and answer != int(answer):
        raise _BadAnswer(f"the answer must be a whole number ({what}), got {answer!r}")
    if not low <= answer <= high:
        raise _BadAnswer(f"the answer ({what}) must lie in [{low:g}, {high:g}], got {answer!r}")
    return int(answer) if integer else float(answer)


def _graded(exercise: str, grade) -> Result:
    """Run `grade() -> (correct, message)`, turning a _BadAnswer into a wrong answer with its message."""
    try:
        return Result(exercise, *grade())
    except _BadAnswer as err:
        return Result(exercise, False, f"Wrong kind of answer: {err}.")


def _predicted(exercise, answer, truth, what: str, general: str, near: str, integer=True, low=0) -> Result:
    """A predicted number ≥ low: right if equal (floats: within 0.1 %); one off (floats: 20 %) gets hint `near`."""
    def grade():
        n = _number(answer, what, integer=integer, low=low)
        if abs(n - truth) <= (0 if integer else 1e-3 * abs(truth)):
            return True, f"{n:g} it is, as the library gives."
        side = ("too many" if n > truth else "too few") if integer else ("too high" if n > truth else "too low")
        close = abs(n - truth) <= (1 if integer else 0.2 * abs(truth))
        return False, f"{n:g} is {side}. " + (near if close else general)
    return _graded(exercise, grade)


def _formula(exercise, answer, cases: list, truth, diagnose, general: str, signature: str) -> Result:
    """A function answer, called on every case's arguments and compared with `truth(*args)`. `diagnose(args, got,
    expected)` names a recognised near miss (the specific hint) or returns None (the general hint)."""
    def grade():
        if not callable(answer):
            raise _BadAnswer(f"the answer must be a function {signature}, got {type(answer).__name__}")
        for args in cases:
            expected = torch.as_tensor(truth(*args), dtype=torch.float64)
            try:
                got = torch.as_tensor(answer(*args), dtype=torch.float64)
            except Exception as err:  # the learner's code: report any error, do not raise it
                raise _BadAnswer(f"calling your function {signature} raised {type(err).__name__}: {err}") from err
            if got.shape != expected.shape:
                raise _BadAnswer(f"your function returned shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
            if not torch.allclose(got, expected, rtol=1e-4, atol=1e-6):
                return False, diagnose(args, got, expected) or general
        return True, f"your function matches the library on all {len(cases)} test cases."
    return _graded(exercise, grade)


def _matches(got, candidates) -> str | None:
    """The hint of the first (wrong value, hint) pair that `got` equals — a recognised near miss — else None."""
    return next((hint for value, hint in candidates
                 if torch.allclose(got, torch.as_tensor(value, dtype=got.dtype), rtol=1e-4, atol=1e-6)), None)


def _knob(exercise, answer, name: str, grid: list, accuracy, low: float, high: float, why: str,
          tolerance: float = 3.0) -> Result:
    """A setting: right if its accuracy is within `tolerance` points of the best on `grid` (and of itself)."""
    def grade():
        value = _number(answer, name, low=low, high=high)
        scores, mine = {g: accuracy(g) for g in grid}, accuracy(value)
        best_at = max(scores, key=scores.get)
        best = max(scores[best_at], mine)
        if mine >= best - tolerance:
            return True, (f"{name} = {value:g} gives {mine:.1f} %, within {tolerance:g} points of the best of "
                          f"{len(grid)} settings tried ({best:.1f} %).")
        if mine >= best - 4 * tolerance:
            side = "smaller" if best_at < value else "larger"
            return False, f"close: {name} = {value:g} gives {mine:.1f} %, the best reaches {best:.1f} %; try a {side} value."
        return False, f"{name} = {value:g} gives {mine:.1f} %, far below the best ({best:.1f} %). {why}"
    return _graded(exercise, grade)


@torch.no_grad()
def _accuracy(net, images, labels, timesteps: int | None = None) -> float:
    """Accuracy (%) of an SNN after T steps on `images`, or of a plain network (ANN, TTFS) if T is None."""
    if timesteps is not None:
        return 100 * (simulate(net, images, timesteps)[-1].argmax(-1) == labels).float().mean().item()
    hits = sum((net.eval()(x).argmax(-1) == y).sum().item() for x, y in zip(images.split(500), labels.split(500)))
    return 100 * hits / len(labels)


def _spike_count(current, threshold, timesteps, v_init=0.0, reset="soft") -> int:
    """Spikes of one (soft- or hard-reset) IF neuron with constant input over T steps, simulated."""
    neuron = Neuron(threshold=threshold, v_init=v_init, reset=reset)
    return int((neuron(encode(torch.tensor([[float(current)]]), timesteps)) > 0).sum())


_CURRENTS = torch.linspace(-0.5, 2.0, 241, dtype=torch.float64) + 0.00123  # z/θ, off the staircase's step edges
_NEURON_CASES = [(_CURRENTS * th, th, t, v) for th in (1.0, 0.5) for t in (1, 4, 8) for v in (0.0, 0.5)]


# ---------------------------------------------------------------- 00 · spiking neurons
def _spikes_half(exercise, answer, *, current, threshold, timesteps):
    return _predicted(exercise, answer, _spike_count(current, threshold, timesteps, v_init=0.5), "spikes in T steps",
                      "Write H[t] = V[t−1] + X from V[0] = θ/2; count the steps with H[t] ≥ θ (a spike keeps H − θ).",
                      "Nearly: V[0] = θ/2 is a head start of half a threshold, and Θ(0) = 1: H[t] = θ exactly fires.")


def _rate_formula(exercise, answer):
    def diagnose(args, got, expected):
        z, threshold, timesteps, v_init = args
        wrong = ~torch.isclose(got, expected, rtol=1e-4, atol=1e-6)
        where = f"θ = {threshold}, T = {timesteps}, V[0] = {v_init}·θ"
        if wrong.float().mean() > 0.5:
            return None
        if wrong[z < 0].any():
            return f"wrong for negative z ({where}): the potential only falls, so the neuron never fires."
        if wrong[z >= threshold].any():
            return f"wrong for z ≥ θ ({where}): a neuron fires at most once per step."
        if v_init > 0:
            return f"wrong when V[0] = {v_init}·θ: the start potential adds to what T·z brings."
        return f"wrong on the staircase itself ({where}): count the spikes, then each carries θ, over T steps."
    return _formula(exercise, answer, _NEURON_CASES, clip_floor, diagnose,
                    "Start from the spike count: how many times does the potential gathered over T steps, "
                    "T·z + V[0], contain θ? Then bound it and turn it into a rate.",
                    "rate(z, threshold, timesteps, v_init) with z a tensor and v_init a fraction of θ")


def _spikes_hard(exercise, answer, *, current, threshold, timesteps):
    return _predicted(exercise, answer, _spike_count(current, threshold, timesteps, reset="hard"), "spikes in T steps",
                      "Step through H[t] = V[t−1] + X from V[0] = 0; after a spike the hard reset sets V[t] = 0.",
                      "Nearly: after each spike the excess H − θ is thrown away, so count the steps to θ afresh.")


# ---------------------------------------------------------------- 01 · pre-activation distributions
def _percentile_formula(exercise, answer, *, records):
    by_samples = {id(r.samples): r for r in records.values()}  # the truth needs the record behind each z
    cases = [(r.samples, p) for r in records.values() for p in (99.0, 99.9)]

    def diagnose(args, got, expected):
        z, p = args
        if torch.isclose(got, torch.quantile(z.double(), p / 100), rtol=1e-3):
            return "you ranked every z; the rule ranks only the values ReLU passes on (z > 0)."
        return None
    return _formula(exercise, answer, cases, lambda z, p: percentile_threshold(by_samples[id(z)], 1, p=p)["threshold"],
                    diagnose, "θ is a value of the layer's own pre-activations: which values does the rule rank, and "
                    "what share p of them must lie at or below θ? (`torch.quantile` ranks a tensor.)",
                    "threshold(z, p) with z a 1-d tensor of pre-activations and p in (0, 100]")


def _percentile_knob(exercise, answer, *, model, calibration, images, labels, timesteps=1, max_samples=50_000):
    def accuracy(p):
        return _accuracy(convert(model, calibration, threshold=partial(percentile_threshold, p=p), timesteps=timesteps,
                                 v_init=0.5, max_samples=max_samples), images, labels, timesteps)
    return _knob(exercise, answer, "p", [50.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.9, 100.0], accuracy, 1e-6, 100.0,
                 f"At T = {timesteps} a neuron sends 0 or θ: trade the clipping of large z against silencing small z.")


# ---------------------------------------------------------------- 02 · conversion error
def _scale_knob(exercise, answer, *, snn, images, labels, timesteps=2):
    return _knob(exercise, answer, "threshold_scale", [round(0.1 * i, 2) for i in range(1, 16)],
                 lambda s: _accuracy(adjusted(snn, threshold_scale=s), images, labels, timesteps), 0.01, 10.0,
                 f"At T = {timesteps} a neuron can send only {timesteps + 1} levels: does a high θ silence more "
                 "neurons than a low θ clips?")


def _quantization_formula(exercise, answer):
    def truth(z, threshold, timesteps, v_init):
        # with a rate of 0 the unevenness part is φ_T − 0; only quantization is compared
        return decompose(z, torch.zeros_like(z), Neuron(threshold=threshold, v_init=v_init), timesteps)["quantization"]

    def diagnose(args, got, expected):
        z, threshold = args[0], args[1]
        if not (~torch.isclose(got, expected, rtol=1e-4, atol=1e-6))[z < threshold].any():
            return "right below θ; above θ the loss belongs to clipping, not to quantization."
        return _matches(got, [(-expected, "the sign is flipped: the parts count what the SNN loses, ANN − SNN.")])
    return _formula(exercise, answer, _NEURON_CASES, truth, diagnose,
                    "Quantization is what the staircase loses against the clipped ANN activation: write the "
                    "clipped activation, then subtract the staircase (`clip_floor`).",
                    "quantization(z, threshold, timesteps, v_init) with z a tensor")


# ---------------------------------------------------------------- 03 · potential initialization
def _expected_error_formula(exercise, answer):
    cases = [(t, th, v) for t in (1, 2, 4, 8) for th in (1.0, 0.5) for v in (0.0, 0.25, 0.5, 1.0)]

    def diagnose(args, got, expected):
        if not torch.isclose(got[0], expected[0], atol=1e-9):
            return _matches(got[0], [(-expected[0], "the mean has the wrong sign: e = φ_T − z, SNN minus ANN.")])
        return "the mean is right; the mean square of e uniform on [a, b) is (b³ − a³)/(3·(b − a))."
    return _formula(exercise, answer, cases, expected_error, diagnose,
                    "For z uniform within one step, e = φ_T(z) − z is uniform on an interval one step θ/T wide: "
                    "where does it start for V[0] = v·θ? Its mean and mean square follow.",
                    "expected(timesteps, threshold, v_init) -> (mean, mean square)")


def _v_init_knob(exercise, answer, *, snn, images, labels, timesteps=4):
    return _knob(exercise, answer, "v_init", [i / 20 for i in range(21)],
                 lambda v: _accuracy(adjusted(snn, v_init=v), images, labels, timesteps), 0.0, 1.0,
                 "V[0] shifts the whole staircase: which start makes the floor round to the nearest level?")


def _first_spike(exercise, answer, *, snn, images, timesteps):
    with Probe(snn) as probe:
        simulate(snn, images, timesteps)
    last, step = list(first_spike_step(probe.spikes).items())[-1]
    if step is None:
        return Result(exercise, None, f"layer '{last}' never fires within T = {timesteps}: raise T to check.")
    return _predicted(exercise, answer, step, f"the first step at which layer '{last}' fires",
                      "Each layer must gather θ before its first spike and hears nothing until the layer before fires.",
                      "Nearly: count how many layers stand before this one, each waiting for its input.")


# ---------------------------------------------------------------- 04 · DIET-SNN
def _energy_formula(exercise, answer, *, report):
    macs, rates = ({d["name"]: d[key] for d in report.layers} for key in ("macs", "rate"))
    toy = ({"conv": 1000, "hidden": 400, "out": 50}, {"conv": 1.0, "hidden": 2.5, "out": 0.4})
    cases = [(macs, rates, 5), (macs, rates, 1), (*toy, 3)]

    def diagnose(args, got, expected):
        macs, rates, timesteps = args
        return _matches(got, [
            (sum(macs.values()) * E_MAC_PJ, "that is the ANN's energy: the later layers receive spikes (E_AC)."),
            (sum(f * rates[n] * E_AC_PJ for n, f in macs.items()), "the first layer gets the image: it multiplies."),
            (expected + (timesteps - 1) * next(iter(macs.values())) * E_MAC_PJ,
             "the first layer's input (the image) is the same at every step: it is computed once.")])
    return _formula(exercise, answer, cases, lambda m, r, t: energy_report(m, r, t).snn_pj, diagnose,
                    "Charge each layer by what reaches it: the analog image needs multiply-accumulates (E_MAC_PJ), "
                    "a spike one accumulate (E_AC_PJ) per MAC it would have needed, r_{l−1} of them per input.",
                    "e_snn(macs, event_rate, timesteps) -> pJ per sample")


def _diet_scale_knob(exercise, answer, *, ann, calibration, images, labels, timesteps=5):
    return _knob(exercise, answer, "scale", [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0],
                 lambda s: _accuracy(diet_init(ann, calibration, scale=s, timesteps=timesteps), images, labels,
                                     timesteps), 0.01, 5.0,
                 "With unit spikes and few steps, how many layers can wait for θ before the output must answer?")


# ---------------------------------------------------------------- 05 · one time step
def _one_step_formula(exercise, answer):
    def diagnose(args, got, expected):
        z, threshold = args
        wrong = ~torch.isclose(got, expected)
        if wrong.any() and (z[wrong] == threshold).all():
            return "right except at z = θ exactly: Θ(0) = 1, a potential that reaches θ fires."
        return _matches(got, [(expected * threshold, "the shape is right, but DIET/IIR-SNN's spikes carry 1, not θ.")])
    cases = [(torch.cat([torch.linspace(-1.0, 3.0, 401), torch.tensor([th])]), th) for th in (1.0, 0.5, 2.0)]
    return _formula(exercise, answer, cases,  # the truth: one step of a unit-spike neuron, V[0] = 0
                    lambda z, th: Neuron(threshold=th, spike_value=1.0)(z.float().view(1, 1, -1))[0, 0], diagnose,
                    "With one step and V[0] = 0, H[1] is just X[1]: when does the neuron fire, and what does it send?",
                    "output(z, threshold) with z a tensor")


@torch.no_grad()
def _binary_disagree(exercise, answer, *, snn, images):
    differ = simulate(snn, images, 1)[-1].argmax(-1) != binary_network(snn)(images).argmax(-1)
    return _predicted(exercise, answer, int(differ.sum()), f"images (of {len(images)}) that differ",
                      "Write H[1] for one step with V[0] = 0 and compare it with the binary activation A·Θ(z − θ).",
                      "Nearly: one step leaves no time for the order of inputs to matter.")


# ---------------------------------------------------------------- 06 · time to first spike
def _ttfs_step(exercise, answer, *, value, bound, window):
    step = int(ttfs_encode(torch.tensor(float(value)), bound, window))
    return _predicted(exercise, answer, step, f"the step k of the spike, 0 … K−1, or {NO_SPIKE} for none",
                      "The threshold starts at θ[0] = s·2^(−½) and halves every step: find the first θ[k] a reaches.",
                      "Nearly: θ[k] is half a power of two below s·2^(−k): a rounds to the nearest one.", low=NO_SPIKE)


def _ttfs_value_formula(exercise, answer):
    grid = torch.cat([torch.linspace(-0.25, 1.5, 176), torch.exp2(-torch.linspace(0.01, 12, 240))])
    cases = [(grid * s, s, k) for s in (1.0, 2.5) for k in (1, 3, 8)]

    def diagnose(args, got, expected):
        a, s, k = args
        wrong = ~torch.isclose(got, expected, rtol=1e-4, atol=1e-6)
        for where, hint in ((a > s, "a > s: it fires at k = 0 at the latest, so a spike carries at most s"),
                            (a <= 0, "a ≤ 0: the potential never reaches a threshold, so nothing is sent"),
                            ((a > 0) & (a < s * 2 ** (0.5 - k)), "small a: below θ[K−1] = s·2^(−K+½) it is silent")):
            if wrong[where].any() and not wrong[~where].any():
                return f"wrong only for {hint} (s = {s}, K = {k})."
        return None  # the general hint
    return _formula(exercise, answer, cases, lambda a, s, k: decode(ttfs_encode(a, s, k), s, k), diagnose,
                    "Find the step k at which the neuron fires (the first threshold s·2^(−k−½) that a reaches), then "
                    "send the value that step carries; a neuron that does not fire within K steps sends 0.",
                    "value(a, bound, window) with a a tensor")


def _window_knob(exercise, answer, *, ann, images, labels):
    target = _accuracy(ann, images, labels) - 1  # a CAT ANN's own K is exact, so some K ≤ its levels reaches it
    truth = next(k for k in itertools.count(1) if _accuracy(convert_ttfs(ann, window=k), images, labels) >= target)
    return _predicted(exercise, answer, truth, "the smallest window K",
                      "Read section 2's CAT curve against the ANN; try the K it skips (`convert_ttfs(ann, window=k)`).",
                      "Nearly: check the window next to yours; the curve of section 2 skips some K.")


# ---------------------------------------------------------------- 07 · trade-off
def _qnn_formula(exercise, answer):
    cases = [(m, t) for m in ({"conv": 1000, "hidden": 400, "out": 50}, {"a": 300, "b": 7}) for t in (1, 2, 4, 7, 16)]

    def diagnose(args, got, expected):
        macs, t = args
        first, rest = next(iter(macs.values())), sum(macs.values()) - next(iter(macs.values()))
        return _matches(got, [(sum(macs.values()) * E_MAC_PJ, "that is the float ANN: integer MACs cost E_MAC(b)."),
                              ((first + rest) * int_mac_pj(math.ceil(math.log2(t + 1))),
                               "the first layer multiplies the 8-bit image, at b = 8."),
                              (first * int_mac_pj(8) + rest * int_mac_pj(math.ceil(math.log2(t))),
                               f"at T = {t} b must count 0 … T spikes, T + 1 values.")])
    return _formula(exercise, answer, cases, lambda m, t: qnn(m, dict.fromkeys(m, 0.0), t).ann_pj, diagnose,
                    "Charge each MAC E_MAC(b) = 0.2 pJ·(8·b)/64 + 0.1 pJ: which b holds the 0 … T spikes of a T-step "
                    "neuron, and which b does the first layer, fed the 8-bit image, use?",
                    "e_qnn(macs, timesteps) -> pJ per sample")


def _break_even_rate(exercise, answer, *, timesteps):
    layer = qnn({"first": 1, "layer": 1}, {"first": 1.0, "layer": 1.0}, timesteps).layers[1]  # one MAC at r = 1
    return _predicted(exercise, answer, layer["ann_pj"] / layer["snn_pj"], "events per input r, over all T",
                      "Write a layer's cost per MAC on both sides, E_MAC(b) and r·E_ADD (0.1 pJ per event): equate.",
                      "Nearly: check b = ⌈log2(T+1)⌉ at this T and E_MAC(b) = 0.2 pJ·8b/64 + 0.1 pJ.", integer=False)


CHECKERS = {
    "00.1": _spikes_half, "00.2": _rate_formula, "00.3": _spikes_hard, "01.1": _percentile_formula,
    "01.2": _percentile_knob, "02.1": _scale_knob, "02.2": _quantization_formula, "03.1": _expected_error_formula,
    "03.2": _v_init_knob, "03.3": _first_spike, "04.1": _energy_formula, "04.2": _diet_scale_knob,
    "05.1": _one_step_formula, "05.2": _binary_disagree, "06.1": _ttfs_step, "06.2": _ttfs_value_formula,
    "06.3": _window_knob, "07.1": _qnn_formula, "07.2": _break_even_rate,
}
