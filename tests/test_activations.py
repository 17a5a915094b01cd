"""activations.py: ClipReLU and QCFS computed by hand, their gradients, and QCFS = the IF neuron's staircase."""
import math

import pytest
import torch

from snnlab.activations import QCFS, ClipReLU, activation_factory
from snnlab.neurons import clip_floor

Z = [-1.3, -0.2, 0.0, 0.3, 0.7, 1.1, 1.6, 2.4, 5.0]  # inputs away from the staircase's edges


def test_clip_relu_is_min_of_relu_and_the_bound_by_hand():
    act = ClipReLU(bound=1.5)
    z = torch.tensor(Z, requires_grad=True)
    a = act(z)
    assert a.tolist() == pytest.approx([min(max(v, 0.0), 1.5) for v in Z])
    a.sum().backward()
    assert z.grad.tolist() == [1.0 if 0 < v < 1.5 else 0.0 for v in Z]  # ReLU's slope below λ_clip, 0 above
    assert act.bound.grad.item() == sum(v > 1.5 for v in Z)  # PACT: 1 for every clipped unit


def qcfs_by_hand(z: float, levels: int, bound: float) -> float:
    """λ_clip·clip(floor(z·L/λ_clip + ½)/L, 0, 1), with Python's floats."""
    return bound * min(max(math.floor(z * levels / bound + 0.5) / levels, 0.0), 1.0)


@pytest.mark.parametrize("levels, bound", [(4, 2.0), (1, 1.0), (8, 3.0)])
def test_qcfs_forward_by_hand(levels, bound):
    act = QCFS(levels=levels, bound=bound)
    assert act(torch.tensor(Z)).tolist() == pytest.approx([qcfs_by_hand(v, levels, bound) for v in Z])


def test_qcfs_gradients_pass_straight_through_the_floor():
    """With floor's gradient taken as 1: ∂a/∂z = 1 on [0, λ_clip], else 0;
    ∂a/∂λ_clip = q − z/λ_clip inside, q outside."""
    levels, bound = 4, 2.0
    act = QCFS(levels=levels, bound=bound)
    z = torch.tensor(Z, requires_grad=True)
    act(z).sum().backward()
    inside = [0 < v < bound for v in Z]
    assert z.grad.tolist() == [1.0 if i else 0.0 for i in inside]
    q = [qcfs_by_hand(v, levels, bound) / bound for v in Z]  # the level, a fraction of λ_clip
    expected = sum(qi - v / bound if i else qi for qi, v, i in zip(q, Z, inside))
    assert act.bound.grad.item() == pytest.approx(expected)


@pytest.mark.parametrize("levels", [1, 2, 4, 8])
def test_qcfs_equals_the_half_start_if_staircase_at_t_equal_l(levels):
    """QCFS with L levels is the rate of an IF neuron with θ = λ_clip, V[0] = θ/2, over T = L steps."""
    bound = 1.7
    z = torch.rand(4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 4 - 1  # off the edges
    act = QCFS(levels=levels, bound=bound).double()
    with torch.no_grad():
        assert torch.allclose(act(z), clip_floor(z, bound, levels, v_init=0.5), atol=1e-12)


def test_factory_builds_fresh_modules_and_refuses_unknown_names():
    make = activation_factory("qcfs", levels=2, bound=3.0)
    first, second = make(), make()
    assert first is not second and (first.levels, first.bound.item()) == (2, 3.0)
    with pytest.raises(ValueError, match="unknown activation 'gelu'; choose one of"):
        activation_factory("gelu")


@pytest.mark.parametrize("build, message", [(lambda: QCFS(levels=0), "levels must be an integer ≥ 1, got 0"),
                                            (lambda: QCFS(levels=2.5), "levels must be an integer ≥ 1, got 2.5"),
                                            (lambda: QCFS(bound=-1.0), "bound must be > 0, got -1.0"),
                                            (lambda: ClipReLU(bound=0.0), "bound must be > 0, got 0.0")])
def test_bad_arguments_are_refused_by_name(build, message):
    with pytest.raises(ValueError, match=message):
        build()
