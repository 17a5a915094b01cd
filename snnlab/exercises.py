"""The notebooks' exercises, checked: `check("02.1", answer, **context)` recomputes the truth with the library.

Every notebook ends with 2–3 exercises of three kinds:

    predict, then check   a number you work out by hand (a spike count, a step), compared with a simulation
    write the formula     a Python function, evaluated on a grid of inputs against the library's own
    find the knob         a setting (θ scale, percentile, V[0]), scored on the notebook's own SNN and images

Nothing here stores an answer: each checker recomputes it (`neurons.clip_floor`, `analysis.expected_error`,
`energy.energy_report`, `simulate.simulate`, …) from the context the notebook passes. A wrong answer gets
a hint graded by how close it is — a general one first, a more specific one for a near miss — and never the
answer itself; `answer = None` reports "not answered yet" (so an unanswered notebook still runs green).
The worked solutions sit in a collapsed <details> block under each exercise in the notebook.

The exercises (notebook.number: what is asked · the context the notebook passes):

    00.1 spikes of an IF neuron, V[0] = θ/2 · current, threshold, timesteps    00.2 the clip-floor rate (function)
    00.3 spikes with a hard reset · current, threshold, timesteps             01.1 the percentile θ (function) · records
    01.2 the percentile p best at T = 1 · model, calibration, images, labels  02.1 the θ scale best at T = 2 · snn, …
    02.2 the quantization part (function)                                     03.1 E[e], E[e²] for any V[0] (function)
    03.2 the V[0] best at T = 4 · snn, images, labels                         03.3 the last layer's first spike · snn, …
    04.1 the SNN's energy sum (function) · report                             04.2 the DIET scale best at T = 5 · ann, …
    05.1 a neuron at T = 1 (function)                                         05.2 T = 1 SNN vs binary network · snn, images

To add an exercise: write `_name(exercise, answer, *, context…) -> Result` (the helpers `_count`,
`_formula` and `_knob` grade the three kinds) and add it to `CHECKERS`.
Reference: issue 15; notebooks 00–05 (section "Exercises").
"""
import inspect
import math
import numbers
from dataclasses import dataclass
from functools import partial

import torch

from .analysis import decompose, expected_error, first_spike_step
from .convert import adjusted, convert, percentile_threshold
from .energy import E_AC_PJ, E_MAC_PJ, energy_report
from .neurons import Neuron, clip_floor, encode
from .simulate import Probe, simulate
from .train_snn import binary_network, diet_init


@dataclass
class Result:
    """The verdict on one answer: `correct` is True, False, or None (not answered yet)."""

    exercise: str
    correct: bool | None
    message: str

    def __str__(self) -> str:
        mark = {True: "✅ right", False: "❌ not yet", None: "… not answered yet"}[self.correct]
        return f"Exercise {self.exercise}: {mark}. {self.message}"

    def __repr__(self) -> str:
        return str(self)

    def _repr_markdown_(self) -> str:
        return str(self)


def check(exercise_id: str, answer, **context) -> Result:
    """Check `answer` to exercise `exercise_id` ("00.1", …) against the library; context = the notebook's objects.

    Returns: a `Result` (prints as one line, also in Jupyter). `answer=None` gives correct=None.
    Raises: ValueError for an unknown exercise or missing/unknown context (a notebook bug, not a wrong answer).
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


def _count(exercise, answer, truth: int, what: str, general: str, near: str) -> Result:
    """A predicted whole number: right if equal; one off gets the specific hint `near`, further off `general`."""
    def grade():
        n = _number(answer, what, integer=True, low=0)
        if n == truth:
            return True, f"{n} it is, as the simulation gives."
        side = "too many" if n > truth else "too few"
        return False, f"{n} is {side}. " + (near if abs(n - truth) == 1 else general)
    return _graded(exercise, grade)


def _formula(exercise, answer, cases: list, truth, diagnose, general: str, signature: str) -> Result:
    """A function answer: call it on every case's arguments and compare with `truth(*args)`.

    `diagnose(args, got, expected)` names a recognised near miss (the specific hint) or returns None
    (then the general hint). The hints show the learner's own value, never the expected one.
    """
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


def _knob(exercise, answer, name: str, grid: list, accuracy, low: float, high: float, why: str,
          tolerance: float = 3.0) -> Result:
    """A setting: right if its accuracy is within `tolerance` points of the best on `grid` (and of itself)."""
    def grade():
        value = _number(answer, name, low=low, high=high)
        scores = {g: accuracy(g) for g in grid}
        mine = accuracy(value)
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


def _accuracy(snn, images, labels, timesteps: int) -> float:
    """Accuracy (%) of `snn` after T steps on `images`."""
    return 100 * (simulate(snn, images, timesteps)[-1].argmax(-1) == labels).float().mean().item()


def _spike_count(current, threshold, timesteps, v_init=0.0, reset="soft") -> int:
    """Spikes of one (soft- or hard-reset) IF neuron with constant input over T steps, simulated."""
    neuron = Neuron(threshold=threshold, v_init=v_init, reset=reset)
    return int((neuron(encode(torch.tensor([[float(current)]]), timesteps)) > 0).sum())


def _currents(threshold: float) -> torch.Tensor:
    """Inputs z from −0.5θ to 2θ, off the staircase's step edges (where float rounding could decide)."""
    return torch.linspace(-0.5, 2.0, 241, dtype=torch.float64) * threshold + 0.00123 * threshold


_NEURON_CASES = [(_currents(th), th, t, v) for th in (1.0, 0.5) for t in (1, 4, 8) for v in (0.0, 0.5)]


# ---------------------------------------------------------------- 00 · spiking neurons
def _spikes_half(exercise, answer, *, current, threshold, timesteps):
    truth = _spike_count(current, threshold, timesteps, v_init=0.5)
    return _count(exercise, answer, truth, "spikes in T steps",
                  "Write H[t] = V[t−1] + X for t = 1, 2, … starting from V[0] = θ/2, and count the steps where "
                  "H[t] ≥ θ (after each spike V keeps H − θ).",
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
    truth = _spike_count(current, threshold, timesteps, reset="hard")
    return _count(exercise, answer, truth, "spikes in T steps",
                  "Step through H[t] = V[t−1] + X from V[0] = 0; after a spike the hard reset sets V[t] = 0.",
                  "Nearly: after each spike the excess H − θ is thrown away, so count the steps to θ afresh.")


# ---------------------------------------------------------------- 01 · pre-activation distributions
def _percentile_formula(exercise, answer, *, records):
    cases = [(record.samples, p) for record in records.values() for p in (99.0, 99.9)]

    def truth(z, p):
        record = next(r for r in records.values() if r.samples is z)
        return percentile_threshold(record, 1, p=p)["threshold"]

    def diagnose(args, got, expected):
        z, p = args
        if torch.isclose(got, torch.quantile(z.double(), p / 100), rtol=1e-3):
            return "you ranked every z; the rule ranks only the values ReLU passes on (z > 0)."
        return None
    return _formula(exercise, answer, cases, truth, diagnose,
                    "θ is a value of the layer's own pre-activations: which values does the rule rank, and "
                    "what share p of them must lie at or below θ? (`torch.quantile` ranks a tensor.)",
                    "threshold(z, p) with z a 1-d tensor of pre-activations and p in (0, 100]")


def _percentile_knob(exercise, answer, *, model, calibration, images, labels, timesteps=1, max_samples=50_000):
    def accuracy(p):
        recipe = partial(percentile_threshold, p=p)
        return _accuracy(convert(model, calibration, threshold=recipe, timesteps=timesteps, v_init=0.5,
                                 max_samples=max_samples), images, labels, timesteps)
    return _knob(exercise, answer, "p", [50.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.9, 100.0], accuracy, 1e-6, 100.0,
                 f"At T = {timesteps} a neuron sends 0 or θ: trade the clipping of large z against silencing small z.")


# ---------------------------------------------------------------- 02 · conversion error
def _scale_knob(exercise, answer, *, snn, images, labels, timesteps=2):
    grid = [round(0.1 * i, 2) for i in range(1, 16)]
    return _knob(exercise, answer, "threshold_scale", grid,
                 lambda s: _accuracy(adjusted(snn, threshold_scale=s), images, labels, timesteps), 0.01, 10.0,
                 f"At T = {timesteps} a neuron can send only {timesteps + 1} levels: does a high θ silence more "
                 "neurons than a low θ clips?")


def _quantization_formula(exercise, answer):
    def truth(z, threshold, timesteps, v_init):
        neuron = Neuron(threshold=threshold, v_init=v_init)
        rate = torch.zeros_like(z)  # the unevenness part is then φ_T − 0; only quantization is compared
        return decompose(z, rate, neuron, timesteps)["quantization"]

    def diagnose(args, got, expected):
        z, threshold = args[0], args[1]
        if torch.allclose(got, -expected, atol=1e-6):
            return "the sign is flipped: the parts count what the SNN loses, ANN − SNN."
        wrong = ~torch.isclose(got, expected, rtol=1e-4, atol=1e-6)
        if not wrong[z < threshold].any():
            return "right below θ; above θ the loss belongs to clipping, not to quantization."
        return None
    return _formula(exercise, answer, _NEURON_CASES, truth, diagnose,
                    "Quantization is what the staircase loses against the clipped ANN activation: write the "
                    "clipped activation, then subtract the staircase (`clip_floor`).",
                    "quantization(z, threshold, timesteps, v_init) with z a tensor")


# ---------------------------------------------------------------- 03 · potential initialization
def _expected_error_formula(exercise, answer):
    cases = [(t, th, v) for t in (1, 2, 4, 8) for th in (1.0, 0.5) for v in (0.0, 0.25, 0.5, 1.0)]

    def diagnose(args, got, expected):
        if not torch.isclose(got[0], expected[0], atol=1e-9):
            if torch.isclose(got[0], -expected[0], atol=1e-9):
                return "the mean has the wrong sign: e = φ_T − z, SNN minus ANN (V[0] = 0 rounds down)."
            return None
        return "the mean is right; the mean square of e uniform on [a, b) is (b³ − a³)/(3·(b − a))."
    return _formula(exercise, answer, cases, expected_error, diagnose,
                    "For z uniform within one step, e = φ_T(z) − z is uniform on an interval one step θ/T wide: "
                    "where does it start for V[0] = v·θ? Its mean and mean square follow.",
                    "expected(timesteps, threshold, v_init) -> (mean, mean square)")


def _v_init_knob(exercise, answer, *, snn, images, labels, timesteps=4):
    grid = [i / 20 for i in range(21)]
    return _knob(exercise, answer, "v_init", grid,
                 lambda v: _accuracy(adjusted(snn, v_init=v), images, labels, timesteps), 0.0, 1.0,
                 "V[0] shifts the whole staircase: which start makes the floor round to the nearest level?")


def _first_spike(exercise, answer, *, snn, images, timesteps):
    with Probe(snn) as probe:
        simulate(snn, images, timesteps)
    last, step = list(first_spike_step(probe.spikes).items())[-1]
    if step is None:
        return Result(exercise, None, f"layer '{last}' never fires within T = {timesteps}: raise T to check.")
    return _count(exercise, answer, step, f"the first step at which layer '{last}' fires",
                  "Each layer must gather θ before its first spike, and it only hears from the layer before it "
                  "once that one has fired.",
                  "Nearly: count how many layers stand before this one, each waiting for its input.")


# ---------------------------------------------------------------- 04 · DIET-SNN
def _energy_formula(exercise, answer, *, report):
    macs = {d["name"]: d["macs"] for d in report.layers}
    rates = {d["name"]: d["rate"] for d in report.layers}
    toy = ({"conv": 1000, "hidden": 400, "out": 50}, {"conv": 1.0, "hidden": 2.5, "out": 0.4})
    cases = [(macs, rates, 5), (macs, rates, 1), (*toy, 3)]

    def diagnose(args, got, expected):
        macs, rates, timesteps = args
        first = next(iter(macs.values()))
        if torch.isclose(got, torch.tensor(sum(macs.values()) * E_MAC_PJ, dtype=got.dtype)):
            return "that is the ANN's energy: spikes reach the layers after the first, costing accumulates."
        if torch.isclose(got, torch.tensor(sum(f * rates[n] * E_AC_PJ for n, f in macs.items()), dtype=got.dtype)):
            return "the first layer receives the analog image, not spikes: it multiplies."
        if torch.isclose(got, expected + (timesteps - 1) * first * E_MAC_PJ):
            return "the first layer's input (the image) is the same at every step: it is computed once."
        return None
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
    def truth(z, threshold):
        return Neuron(threshold=threshold, spike_value=1.0)(z.float().view(1, 1, -1))[0, 0]  # T = 1, V[0] = 0

    def diagnose(args, got, expected):
        z, threshold = args
        wrong = ~torch.isclose(got, expected)
        if wrong.any() and (z[wrong] == threshold).all():
            return "right except at z = θ exactly: Θ(0) = 1, a potential that reaches θ fires."
        if torch.allclose(got, expected * threshold):
            return "the shape is right, but DIET/IIR-SNN's spikes carry 1 (θ is folded into the next weights)."
        return None
    cases = [(torch.cat([torch.linspace(-1.0, 3.0, 401), torch.tensor([th])]), th) for th in (1.0, 0.5, 2.0)]
    return _formula(exercise, answer, cases, truth, diagnose,
                    "With one step and V[0] = 0, H[1] is just X[1]: when does the neuron fire, and what does it send?",
                    "output(z, threshold) with z a tensor")


def _binary_disagree(exercise, answer, *, snn, images):
    with torch.no_grad():
        spiking = simulate(snn, images, 1)[-1].argmax(-1)
        binary = binary_network(snn)(images).argmax(-1)
    truth = int((spiking != binary).sum())
    return _count(exercise, answer, truth, f"images (of {len(images)}) where the two answers differ",
                  "Write H[1] for one step with V[0] = 0 and compare the neuron's output with the binary "
                  "activation a = A·Θ(z − θ): where could they differ?",
                  "Nearly: one step leaves no time for the order of inputs to matter.")


CHECKERS = {
    "00.1": _spikes_half, "00.2": _rate_formula, "00.3": _spikes_hard,
    "01.1": _percentile_formula, "01.2": _percentile_knob,
    "02.1": _scale_knob, "02.2": _quantization_formula,
    "03.1": _expected_error_formula, "03.2": _v_init_knob, "03.3": _first_spike,
    "04.1": _energy_formula, "04.2": _diet_scale_knob,
    "05.1": _one_step_formula, "05.2": _binary_disagree,
}
