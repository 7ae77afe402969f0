"""Element-wise pieces of the Light GRU: the candidate nonlinearity, its derivative, the backward's
per-step coefficients, constants."""

import torch
import torch.nn.functional as F
from torch import Tensor

NONLINEARITIES = ("relu", "leaky_relu", "tanh", "sin")
LEAKY_RELU_SLOPE = 0.01
LAYER_NORM_EPS = 1e-5


def check_nonlinearity(nonlinearity: str) -> None:
    """Raise ``ValueError`` unless ``nonlinearity`` is one of :data:`NONLINEARITIES`."""
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"unknown nonlinearity {nonlinearity!r}; choose one of {NONLINEARITIES}")


def candidate_activation(x: Tensor, nonlinearity: str) -> Tensor:
    """Apply the candidate nonlinearity ``f`` by name (relu, leaky_relu, tanh, sin)."""
    if nonlinearity == "relu":
        return torch.relu(x)
    if nonlinearity == "leaky_relu":
        return F.leaky_relu(x, LEAKY_RELU_SLOPE)
    if nonlinearity == "tanh":
        return torch.tanh(x)
    if nonlinearity == "sin":
        return torch.sin(x)
    check_nonlinearity(nonlinearity)
    raise AssertionError("unreachable")


def candidate_activation_into(x: Tensor, nonlinearity: str, out: Tensor) -> Tensor:
    """Write ``f(x)`` into the preallocated ``out`` (no allocation; same values as autograd's).

    >>> out = torch.empty(3)
    >>> candidate_activation_into(torch.tensor([-1.0, 0.0, 2.0]), "relu", out).tolist()
    [0.0, 0.0, 2.0]
    """
    if nonlinearity == "relu":
        return torch.clamp_min(x, 0, out=out)
    if nonlinearity == "leaky_relu":
        return torch.ops.aten.leaky_relu.out(x, LEAKY_RELU_SLOPE, out=out)
    if nonlinearity == "tanh":
        return torch.tanh(x, out=out)
    if nonlinearity == "sin":
        return torch.sin(x, out=out)
    check_nonlinearity(nonlinearity)
    raise AssertionError("unreachable")


def candidate_derivative(x: Tensor, activated: Tensor, nonlinearity: str) -> Tensor:
    """``f'(x)`` given ``x`` and ``activated = f(x)``, as autograd's backward of ``f`` would use.

    >>> x = torch.tensor([-1.0, 2.0])
    >>> candidate_derivative(x, torch.relu(x), "relu").tolist()
    [0.0, 1.0]
    """
    if nonlinearity == "relu":
        return (x > 0).to(x.dtype)
    if nonlinearity == "leaky_relu":
        return torch.where(x > 0, x.new_ones(()), x.new_full((), LEAKY_RELU_SLOPE))
    if nonlinearity == "tanh":
        return 1 - activated * activated
    if nonlinearity == "sin":
        return torch.cos(x)
    check_nonlinearity(nonlinearity)
    raise AssertionError("unreachable")


def gate_coefficients(
    gates: Tensor,
    prev_states: Tensor,
    zeta: Tensor,
    valid: Tensor | None,
    drop_mask: Tensor | None,
    nonlinearity: str,
) -> None:
    """For a chunk of steps overwrite the pre-activations ``gates`` with ``d gates / d h_t`` and
    write ``d h_t / d h_{t-1}`` (the direct path through ``z``) into ``zeta``.

    ``coef_z = sigma'(.) (h_{t-1} - c)``, ``coef_c = (1 - z) f'(.) m``, ``zeta = z``; on padded
    frames the state is held: ``coef = 0`` and ``zeta = 1``.
    """
    hidden = prev_states.shape[-1]
    pre_z, pre_c = gates[..., :hidden], gates[..., hidden:]
    torch.sigmoid(pre_z, out=zeta)
    c = candidate_activation(pre_c, nonlinearity)
    slope = candidate_derivative(pre_c, c, nonlinearity)
    if drop_mask is not None:
        m = drop_mask.unsqueeze(1)
        c.mul_(m)
        slope.mul_(m)
    # From here on the pre-activations are dead: the coefficients take their place.
    coef_z, coef_c = pre_z, pre_c
    torch.sub(prev_states, c, out=coef_z)
    one_minus_z = 1 - zeta
    coef_z.mul_(zeta).mul_(one_minus_z)
    torch.mul(one_minus_z, slope, out=coef_c)
    if valid is not None:
        gates.mul_(valid)
        zeta.masked_fill_(~valid, 1.0)


def gate_coefficients_from_sign(
    gates: Tensor,
    states: Tensor,
    positive: Tensor,
    zeta: Tensor,
    valid: Tensor | None,
    drop_mask: Tensor | None,
    nonlinearity: str,
) -> None:
    """:func:`gate_coefficients` for a piecewise-linear ``f``, from the update gate's pre-activation
    alone: ``gates[..., :H]`` holds it, ``positive`` tells where ``f`` had slope one.

    ``states`` spans the chunk's steps and one more (``h_{t-1}`` and ``h_t``). Since
    ``h_t = z h_{t-1} + (1 - z) c``, ``(1 - z) (h_{t-1} - c) = h_{t-1} - h_t``: ``coef_z =
    z (h_{t-1} - h_t)`` needs no ``c``; ``coef_c = (1 - z) f' m`` with ``f'`` from the sign.
    """
    hidden = states.shape[-1]
    coef_z, coef_c = gates[..., :hidden], gates[..., hidden:]
    torch.sigmoid(coef_z, out=zeta)
    torch.sub(states[:, :-1], states[:, 1:], out=coef_z)
    coef_z.mul_(zeta)
    torch.mul(zeta, -1.0, out=coef_c).add_(1.0)
    if nonlinearity == "relu":
        coef_c.mul_(positive)
    else:
        coef_c.mul_(torch.where(positive, 1.0, coef_c.new_full((), LEAKY_RELU_SLOPE)))
    if drop_mask is not None:
        coef_c.mul_(drop_mask.unsqueeze(1))
    if valid is not None:
        gates.mul_(valid)
        zeta.masked_fill_(~valid, 1.0)
