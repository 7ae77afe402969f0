"""Element-wise pieces of the Light GRU: the candidate nonlinearity, its derivative, constants."""

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
