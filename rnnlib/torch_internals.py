"""The torch names rnnlib uses that are not public API, in one place.

PyTorch documents ``torch.nn.functional`` and ``torch.Tensor``; the Light GRU kernel also calls
ATen operators that return what the public functions compute but throw away (batch- and
layer-norm statistics, the layer-norm backward) and oneDNN's linear operator. These are stable
in practice but carry no promise, so every use goes through this module and
:func:`missing_names` (run by ``tests/test_private_api.py``) says which of them a torch upgrade
removed.

``REQUIRED`` lists each name with why rnnlib needs it; ``OPTIONAL`` those with a public fallback
(the oneDNN product falls back to ``torch.mm``, checked once per process by
:func:`onednn_linear_available`).

>>> missing_names()
[]
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

REQUIRED = {
    "torch.native_batch_norm": "batch-norm statistics and x_hat in one call (Light GRU kernel)",
    "torch.native_layer_norm": "layer norm with its mean and 1/std (SLi-GRU forward)",
    "torch.ops.aten.native_layer_norm_backward": "SLi-GRU's per-step layer-norm gradient",
    "torch.lstm": "one fused LSTM layer per direction and length stretch (rnnlib.torch_rnn)",
    "torch.gru": "the same for the GRU",
    "torch.rnn_tanh": "the same for the tanh RNN",
    "torch.rnn_relu": "the same for the relu RNN",
}
OPTIONAL = {
    "torch.ops.mkldnn._linear_pointwise": "oneDNN's product (falls back to torch.mm)",
    "torch.ops.mkldnn._reorder_linear_weight": "a weight packed once for oneDNN's per-step product",
}


def _resolve(dotted: str) -> object | None:
    obj: object = torch
    for part in dotted.split(".")[1:]:
        try:
            obj = getattr(obj, part)
        except (AttributeError, RuntimeError):  # torch.ops raises RuntimeError for unknown ops
            return None
    return obj


def missing_names(names: dict[str, str] = REQUIRED) -> list[str]:
    """``"name (why)"`` for each name of ``names`` that this torch build lacks."""
    return [f"{name} ({why})" for name, why in names.items() if _resolve(name) is None]


def native_batch_norm(x: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(x_hat, mean, 1/std)`` of ``x [N, C]`` over its rows, no affine, no running stats."""
    return torch.native_batch_norm(x, None, None, None, None, True, 0.0, eps)


def native_layer_norm(x: Tensor, shape: tuple[int, ...], eps: float) -> tuple[Tensor, ...]:
    """``(normed, mean, 1/std)`` of ``x`` over its last ``len(shape)`` axes, no affine."""
    return torch.native_layer_norm(x, shape, None, None, eps)


def layer_norm_input_grad(
    grad: Tensor, x: Tensor, shape: tuple[int, ...], mean: Tensor, rstd: Tensor
) -> Tensor:
    """Gradient of :func:`native_layer_norm` with respect to its input (no affine)."""
    op = torch.ops.aten.native_layer_norm_backward
    return op(grad, x, shape, mean, rstd, None, None, (True, False, False))[0]


@functools.cache
def onednn_linear_available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether oneDNN's linear operator exists in this build and runs ``dtype`` here (checked once).

    A CPU without the instructions for a dtype (bfloat16 on an AMD EPYC without AVX-512 BF16)
    has the operator but no kernel for it: that counts as absent, and callers use ``torch.mm``.

    >>> isinstance(onednn_linear_available(torch.bfloat16), bool)
    True
    """
    if not torch.backends.mkldnn.is_available() or missing_names(OPTIONAL):
        return False
    try:
        weight = torch.ones(4, 3, dtype=dtype)
        onednn_product(torch.ones(2, 3, dtype=dtype), weight)
        onednn_product(torch.ones(2, 3, dtype=dtype), onednn_packed_weight(weight, rows=2))
    except RuntimeError:
        return False
    return True


def onednn_product(x: Tensor, weight: Tensor) -> Tensor:
    """``x [..., K] @ weight[M, K]^T`` by oneDNN (float32 or bfloat16 CPU tensors)."""
    # The resolved overload: calling the op packet costs microseconds per step of a loop.
    return torch.ops.mkldnn._linear_pointwise.default(x, weight, None, "none", [], "")


def onednn_packed_weight(weight: Tensor, rows: int) -> Tensor:
    """``weight [M, K]`` reordered once into oneDNN's blocked layout for products of ``rows``
    rows: an opaque tensor that only :func:`onednn_product` reads (no autograd). A loop that
    multiplies by the same weight every step then skips the reorder that each call of
    :func:`onednn_product` with a plain weight does.
    """
    return torch.ops.mkldnn._reorder_linear_weight.default(weight.contiguous(), rows)
