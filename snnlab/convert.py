"""ANN → SNN conversion: fold BN → record pre-activations → calibrate thresholds → replace.

Each activation (ReLU, ClipReLU, QCFS, CAT) becomes a `Neuron`; every other layer is wrapped in
`TimeBatched` and runs on all steps at once. A threshold recipe is a plain function
`recipe(record, timesteps, v_init) -> dict of Neuron arguments` ("threshold", and maybe "spike_value"),
picked by name from `RECIPES` or passed directly (`functools.partial(percentile_threshold, p=99)`).

Taught in notebooks 01 (recipes on the distributions) and 02 (accuracy vs T per recipe).
"""
import copy
import math
import numbers
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from .activations import CAT, QCFS, ClipReLU
from .neurons import Neuron, SharedDropout, TimeBatched, check_images, check_timesteps, clip_floor, neurons
from .parallel import model_device, resolve_device

SPIKING_SITES = (nn.ReLU, ClipReLU, QCFS, CAT)
STATELESS = (nn.Conv2d, nn.Linear, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)


# ---------------------------------------------------------------- 1. fold batch norm
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` in which each BatchNorm is folded into the conv/linear layer before it.

    BN(Wx + b) = γ·(Wx + b − μ)/√(σ² + ε) + β = W'x + b',  W' = W·γ/√(σ² + ε),  b' = (b − μ)·γ/√(σ² + ε) + β.
    The BN is replaced by `nn.Identity`. Exact up to float rounding (tests: ≤ 1e-5).

    Raises ValueError naming the BN layer when it does not directly follow a conv or linear layer.
    """
    model = copy.deepcopy(model).eval()
    for parent_name, parent in model.named_modules():
        previous = None
        for name, child in parent.named_children():
            if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
                if not isinstance(previous, (nn.Conv2d, nn.Linear)):
                    raise ValueError(f"cannot fold BatchNorm '{parent_name}.{name}': it must directly follow "
                                     f"a Conv2d or Linear layer in its parent, found {type(previous).__name__}")
                _fold_into(previous, child)
                setattr(parent, name, nn.Identity())
            previous = child
    return model


@torch.no_grad()
def _fold_into(layer: nn.Module, bn: nn.Module) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # γ/√(σ² + ε), [C_out]
    bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
    layer.weight.mul_(scale.view(-1, *[1] * (layer.weight.dim() - 1)))
    layer.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)


# ---------------------------------------------------------------- 2. record pre-activations
@dataclass
class LayerRecord:
    """What calibration knows of one activation layer: a sample of its inputs z and their maximum."""

    name: str
    activation: nn.Module  # the ANN's activation module (its output is the conversion's target)
    samples: torch.Tensor  # [N] a uniform random sample of the pre-activations z
    max: float  # the exact maximum over all recorded values


@torch.no_grad()
def record_preactivations(model: nn.Module, images: torch.Tensor, max_samples: int = 200_000,
                          batch_size: int = 256, seed: int = 0) -> dict:
    """Run `model` on `images` and keep, per activation layer, a random sample of its inputs z.

    Args:
        model: the ANN (fold BN first: the pre-activations are then those the SNN integrates).
        images: calibration images [N, C, H, W] (Rueckauer et al.: data-based normalization), moved
            batch by batch to the model's device.
        max_samples: values kept per layer (a uniform sample; the maximum is exact).

    Returns: {layer name: LayerRecord}, in the order the layers run; the samples on the CPU.
    """
    sites = {name: m for name, m in model.named_modules() if isinstance(m, SPIKING_SITES)}
    if not sites:
        raise ValueError("the model has no activation to convert (expected nn.ReLU, ClipReLU, QCFS or CAT modules)")
    check_images(images, "images", next((p.dtype for p in model.parameters()), torch.float32))
    if len(images) == 0:
        raise ValueError("images holds no calibration image: pass e.g. 1,000 training images [N, C, H, W]")
    gen, chunks = torch.Generator().manual_seed(seed), {name: [] for name in sites}
    per_batch = max(1, max_samples * batch_size // max(len(images), 1))
    hooks = [m.register_forward_pre_hook(partial(_keep_sample, chunks[name], per_batch, gen))
             for name, m in sites.items()]
    try:
        model.eval()
        device = model_device(model)
        for batch in images.split(batch_size):
            model(batch.to(device, non_blocking=True))
    finally:
        for h in hooks:
            h.remove()
    return {name: LayerRecord(name, sites[name], torch.cat([c[1] for c in chunks[name]])[:max_samples],
                              max(c[0] for c in chunks[name])) for name in sites}


def _keep_sample(store, n, gen, module, inputs):
    z = inputs[0].detach().flatten()
    index = torch.randint(len(z), (min(n, len(z)),), generator=gen).to(z.device)
    store.append((z.max().item(), z[index].float().cpu()))


# ---------------------------------------------------------------- 3. threshold recipes
def max_threshold(record: LayerRecord, timesteps: int, v_init: float = 0.0) -> dict:
    """θ = the largest pre-activation seen (Diehl et al. 2015, data-based normalization).

    Like every recipe it takes (record, T, V[0]/θ); those that do not model the neuron ignore T and V[0].
    """
    return {"threshold": record.max}


def percentile_threshold(record: LayerRecord, timesteps: int, v_init: float = 0.0, p: float = 99.9) -> dict:
    """θ = the p-th percentile of the layer's non-zero activations (Rueckauer et al. 2017: p = 99.9)."""
    if not 0 < p <= 100:
        raise ValueError(f"percentile_threshold: p must be in (0, 100], got {p}")
    positive = record.samples[record.samples > 0]
    if len(positive) == 0:
        raise ValueError(f"layer '{record.name}' never had a positive input on the calibration images: calibrate "
                         "on more or other images, or check the ANN's weights")
    return {"threshold": torch.quantile(positive, p / 100).item()}


def bound_threshold(record: LayerRecord, timesteps: int, v_init: float = 0.0) -> dict:
    """θ = λ_clip, the trained bound of a ClipReLU/QCFS activation (Datta & Beerel; OPI; QCFS)."""
    if not hasattr(record.activation, "bound"):
        raise ValueError(f"layer '{record.name}' is a {type(record.activation).__name__} without a trained bound "
                         "λ_clip: train the ANN with activation 'clip' or 'qcfs', or pick another threshold recipe")
    return {"threshold": record.activation.bound.item()}


def mse_threshold(record: LayerRecord, timesteps: int, v_init: float = 0.5, steps: int = 95) -> dict:
    """θ = argmin over θ = max·(1 − 0.01·i), i < 95, of E[(a(z) − φ_T(z; θ))²] (Li et al. 2021).

    a = the ANN's activation, φ_T = `clip_floor` with V[0] = v_init·θ and spikes carrying θ.
    """
    z, target = record.samples, record.activation(record.samples)
    grid = [record.max * (1 - 0.01 * i) for i in range(steps)]
    errors = [torch.mean((target - clip_floor(z, th, timesteps, v_init)) ** 2).item() for th in grid]
    return {"threshold": grid[min(range(steps), key=errors.__getitem__)]}


def distribution_aware(record: LayerRecord, timesteps: int, v_init: float = 0.0, steps: int = 100) -> dict:
    """Datta & Beerel's per-layer (α, β): θ = α·z_max fires, a spike carries A = β·z_max; fitted to p(z).

    Minimizes E[(a(z) − (A/T)·clip(floor((T·z + v_init·θ)/θ), 0, T))²] over the measured z: α on a
    grid α·z_max ∈ {z_max·i/steps}, β in closed form (least squares, β·z_max = Σa·n / Σn², n = counts / T).
    z_max = the layer's largest pre-activation (the paper scales by its clip bound μ; μ is BN's mean here).
    RECONSTRUCTION: the paper's code loads (α, β) from files whose making is not published; this search
    follows the paper's framing (methods digest §1). The paper's neurons start at V[0] = 0 (the default here;
    `snnlab compare` method datta@0), where the fit finds A ≈ 2θ at T = 1 and ≈ 1.5θ at T = 2; at V[0] = θ/2
    (datta@0.5, snnlab's variant) it finds A ≈ θ and nearly the MSE search's θ (notebook 01).
    """
    z, target = record.samples, record.activation(record.samples)
    best = (float("inf"), None, None)
    for i in range(1, steps + 1):
        threshold = record.max * i / steps
        n = clip_floor(z, threshold, timesteps, v_init, spike_value=1.0)  # counts / T
        value = (target * n).sum() / (n * n).sum().clamp(min=1e-12)  # closed-form amplitude A
        error = torch.mean((target - value * n) ** 2).item()
        if error < best[0] and value > 0:
            best = (error, threshold, value.item())
    return {"threshold": best[1], "spike_value": best[2]}


RECIPES = {"max": max_threshold, "percentile": percentile_threshold, "bound": bound_threshold,
           "mse": mse_threshold, "datta": distribution_aware,
           "p90": partial(percentile_threshold, p=90.0), "p99": partial(percentile_threshold, p=99.0),
           "p99.7": partial(percentile_threshold, p=99.7)}
RECIPE_LABELS = {"max": "max", "percentile": "99.9th percentile", "bound": "learned λ_clip", "mse": "MSE search",
                 "datta": "Datta & Beerel (α, β)", "p90": "90th percentile", "p99": "99th percentile",
                 "p99.7": "99.7th percentile"}
# Recipes whose θ depends on neither T nor V[0]: one conversion serves every T (`snnlab compare` runs it once).
T_FREE_RECIPES = ("max", "percentile", "bound", "p90", "p99", "p99.7")


def optimal_v_init(record: LayerRecord, timesteps: int, setting: dict, steps: int = 21) -> float:
    """The V[0]/θ in {0, 1/20, …, 1} that minimizes E[(a(z) − φ_T(z))²] for this layer's θ and A."""
    z, target = record.samples, record.activation(record.samples)
    grid = [i / (steps - 1) for i in range(steps)]
    errors = [torch.mean((target - clip_floor(z, setting["threshold"], timesteps, v,
                                              setting.get("spike_value"))) ** 2).item() for v in grid]
    return grid[min(range(steps), key=errors.__getitem__)]


# ---------------------------------------------------------------- 4. replace: the whole pipeline
def convert(model: nn.Module, images: torch.Tensor, *, threshold="percentile", timesteps: int = 8,
            v_init=0.5, maxpool: str = "error", max_samples: int = 200_000, device=None) -> nn.Module:
    """Convert a trained ANN into an SNN of IF neurons (soft reset) that runs on [T, B, ...] input.

    Steps, in order: fold BN → record pre-activations on `images` → one threshold per layer from the
    recipe → replace each activation by a `Neuron` and wrap every other layer in `TimeBatched`.
    Spikes carry θ (or the recipe's A), so the ANN's weights are used unchanged: scaling θ is the
    same as Diehl's weight normalization (methods digest §8.4).

    Args:
        model: a trained ANN built from modules (see models.py); it is not modified.
        images: calibration images [N, C, H, W], e.g. 1,000 training images.
        threshold: a name in `RECIPES` ("max", "percentile", "bound", "mse", "datta", "p90", "p99", "p99.7")
            or a function `recipe(record, timesteps, v_init) -> {"threshold": …}`.
        timesteps: the T the recipes that model the neuron ("mse", "datta") fit for.
        v_init: V[0] as a fraction of θ (0.0, 0.5 = OPI's θ/2) or "optimal" (per layer, by search).
        maxpool: "avg" replaces MaxPool2d by AvgPool2d; "error" refuses it.
        device: where the ANN is calibrated and the SNN is put (None: the ANN's device; `parallel.resolve_device`).

    Returns: the SNN (eval mode, on `device`). Run it with `simulate.simulate` / `simulate.evaluate_snn`, which check
        their input against its `input_shape` attribute (one calibration image's shape, e.g. (3, 32, 32));
        `snn.activations` maps each neuron layer's name to the ANN activation it replaced (the target
        `analysis.layer_errors` measures against).
    Reference: methods digest §1, §2, §6; notebooks 01–03.
    """
    recipe = resolve_recipe(threshold)
    check_timesteps(timesteps)
    if v_init != "optimal":
        _check_v_init(v_init, " or 'optimal'")
    if maxpool not in ("avg", "error"):
        raise ValueError(f"maxpool must be 'avg' or 'error', got {maxpool!r}")
    device = model_device(model) if device is None else resolve_device(device)
    folded = fold_batchnorm(model).to(device)
    records = record_preactivations(folded, images, max_samples=max_samples)
    settings = {}
    for name, record in records.items():
        fixed = 0.5 if v_init == "optimal" else v_init
        setting = {"v_init": fixed, **recipe(record, timesteps, fixed)}
        check_threshold(record, setting["threshold"])
        if v_init == "optimal":
            setting["v_init"] = optimal_v_init(record, timesteps, setting)
        settings[name] = setting
    snn = _replace(folded, settings, maxpool).to(device).eval()
    snn.input_shape = tuple(images.shape[1:])  # what `simulate` accepts: [B, *input_shape]
    snn.activations = {name: record.activation for name, record in records.items()}  # the targets (analysis.py)
    return snn


def relu_to_qcfs(model: nn.Module, images: torch.Tensor, *, levels: int = 1, max_samples: int = 200_000) -> nn.Module:
    """A copy of a trained ReLU ANN with each ReLU replaced by QCFS(L), its λ_clip set from the layer's activations.

    λ_clip,l = argmin over θ of E[(ReLU(z) − QCFS_L(z; θ))²] on the layer's recorded z: the MSE search
    (`mse_threshold`) at T = L with V[0] = θ/2, because QCFS_L(z; θ) = clip_floor(z, θ, L, ½) (notebook 03).
    The third route to T = 1 (notebook 05): at T = 1 with V[0] = θ/2 an IF neuron fires iff z ≥ θ/2 and
    sends θ, which is QCFS with L = 1, so after fine-tuning the copy as an ANN (`train.train_ann`, a few
    epochs) `convert(qcfs, images, threshold="bound", v_init=0.5)` run at T = 1 gives the QCFS ANN's
    outputs exactly. Starting from the trained ReLU ANN avoids training QCFS L = 1 from scratch with
    λ_clip = 8 (issue 15: 32.60 % after 8 epochs vs 72.00 % for ReLU).

    Args:
        model: a trained ANN with nn.ReLU activations (it is not modified).
        images: calibration images [N, C, H, W]. levels: L (≥ 1). max_samples: as `record_preactivations`.

    Returns: the QCFS ANN (eval mode), BatchNorm kept, λ_clip trainable.
    """
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
        raise ValueError(f"levels must be an integer ≥ 1, got {levels!r}")
    records = record_preactivations(fold_batchnorm(model), images, max_samples=max_samples)
    qcfs = copy.deepcopy(model).eval()
    for name, record in records.items():
        if not isinstance(record.activation, nn.ReLU):
            raise TypeError(f"layer '{name}' is a {type(record.activation).__name__}, not nn.ReLU: pass a ReLU ANN")
        bound = mse_threshold(record, levels, 0.5)["threshold"]
        check_threshold(record, bound)
        parent, _, child = name.rpartition(".")
        setattr(qcfs.get_submodule(parent) if parent else qcfs, child, QCFS(levels=levels, bound=bound))
    return qcfs


def adjusted(snn: nn.Module, threshold_scale: float = 1.0, v_init: float | None = None) -> nn.Module:
    """A copy of a converted SNN with every θ and spike value A × s, and V[0] = v_init·θ: each layer's level kept.

    θ' = s·θ, A' = s·A: a neuron with constant input z sends (A'/T)·floor((T·z + V[0])/θ') ≈ z, as before,
    only on a finer (s < 1) or coarser (s > 1) staircase with a lower or higher top rate A'. This is not
    DIET-SNN's threshold scaling, which keeps unit spikes and so changes the level (`diet_scaled`).
    `v_init=None` keeps each layer's V[0]. Notebooks 02 and 03 sweep both knobs with sliders.

    Symbols: s = `threshold_scale`, θ = threshold, A = spike value (θ when None), T = time steps.
    Example: one neuron (θ = 1), constant input 0.3, T = 100: rate 0.300 before, 0.300 after s = 0.5.
    """
    return _scaled(snn, threshold_scale, v_init, scale_spikes=True)


def diet_scaled(snn: nn.Module, threshold_scale: float = 1.0, v_init: float | None = None) -> nn.Module:
    """A copy of a converted SNN with every θ × s and the spike value A kept: DIET-SNN's threshold scaling.

    θ' = s·θ, A' = A: DIET-SNN's neurons emit unit spikes, so lowering θ to s·θ makes a neuron fire 1/s
    times as often while each spike still carries the same value; every layer's output grows by 1/s
    (until it clips at A per step), and the next layers see larger inputs. DIET-SNN (θ ← 0.2·θ at T = 5)
    then trains the SNN, which absorbs the change; `adjusted` is the variant that keeps each level.

    Symbols: s = `threshold_scale`, θ = threshold, A = spike value (θ of the unscaled neuron when None).
    Example: one neuron (θ = 1), constant input 0.3, T = 100: rate 0.300 before, 0.600 after s = 0.5.
    Reference: Rathi & Roy, DIET-SNN (code: snn.py `find_threshold`, scaling_factor); methods digest §3.
    """
    return _scaled(snn, threshold_scale, v_init, scale_spikes=False)


def _scaled(snn, threshold_scale, v_init, scale_spikes: bool) -> nn.Module:
    if isinstance(threshold_scale, bool) or not isinstance(threshold_scale, numbers.Real) or \
            not 0 < threshold_scale < math.inf:
        raise ValueError(f"threshold_scale must be a finite number > 0, got {threshold_scale!r}")
    if v_init is not None:
        _check_v_init(v_init, " or None (keep each layer's)")
    snn = copy.deepcopy(snn)
    for neuron in neurons(snn).values():
        if neuron.spike_value is None and not scale_spikes:  # keep A at the unscaled θ
            neuron.spike_value = neuron.threshold.detach().clone()
        neuron.threshold.mul_(threshold_scale)
        if neuron.spike_value is not None and scale_spikes:
            neuron.spike_value.mul_(threshold_scale)
        if v_init is not None:
            neuron.v_init.fill_(v_init)
    return snn


def _check_v_init(v_init, alternative: str) -> None:
    """Raise a ValueError unless `v_init` (V[0] as a fraction of θ) is a number in [0, 1]."""
    if isinstance(v_init, bool) or not isinstance(v_init, numbers.Real) or not 0 <= v_init <= 1:
        raise ValueError(f"v_init must be a number in [0, 1] (V[0] as a fraction of θ){alternative}, got {v_init!r}")


def check_threshold(record: LayerRecord, threshold) -> None:
    """Raise a ValueError naming the layer unless the recipe's θ is finite and > 0 (a scalar or a tensor)."""
    value = torch.as_tensor(math.nan if threshold is None else threshold)
    if torch.all(torch.isfinite(value) & (value > 0)):
        return
    why = (f"its largest input on the calibration images is {record.max:.4g}, so it would never fire: calibrate "
           "on more or other images, or check the ANN's weights" if not record.max > 0 else
           "a threshold recipe must return a finite θ > 0")
    raise ValueError(f"layer '{record.name}': the threshold recipe gave θ = {threshold}; {why}")


def resolve_recipe(threshold):
    """The recipe function of `threshold`: a name in `RECIPES` or a function (record, T, v_init) → θ."""
    if callable(threshold):
        return threshold
    if threshold not in RECIPES:
        raise ValueError(f"unknown threshold recipe {threshold!r}; choose one of {sorted(RECIPES)} or pass a function")
    return RECIPES[threshold]


def _replace(module: nn.Module, settings: dict, maxpool: str, prefix: str = "") -> nn.Module:
    """Swap activations for Neurons and wrap stateless leaves in TimeBatched, recursively, in place."""
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, SPIKING_SITES):
            new = Neuron(**settings[path])
        elif isinstance(child, nn.MaxPool2d):
            if maxpool != "avg":
                raise ValueError(f"layer '{path}' is a MaxPool2d, which has no exact spiking version: pass "
                                 "maxpool='avg' to replace it by AvgPool2d, or train the ANN with pool='avg'")
            new = TimeBatched(nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
        elif isinstance(child, nn.Dropout):
            new = SharedDropout(child.p)
        elif isinstance(child, nn.Identity):  # what BN folding leaves: works on any shape
            continue
        elif isinstance(child, STATELESS):
            new = TimeBatched(child)
        elif len(list(child.children())) > 0:
            new = _replace(child, settings, maxpool, prefix=f"{path}.")
        else:
            supported = ", ".join(c.__name__ for c in SPIKING_SITES + STATELESS)
            raise ValueError(f"layer '{path}' ({type(child).__name__}) cannot be converted; supported: "
                             f"{supported}, MaxPool2d, Dropout, BatchNorm, Identity")
        setattr(module, name, new)
    return module
