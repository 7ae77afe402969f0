"""``x W^T`` for every frame (the input projection of a layer) through oneDNN where it is faster.

PyTorch runs float32 CPU products through MKL's ``sgemm``. On AMD EPYC (Zen 4) oneDNN's own
kernels run the projection shapes of a recurrent stack (``[8000, 1024] x [1024, 1024]``) 10-20%
faster, forward and for the input's gradient (``scripts/bench_rnn.py`` measures the layer). The
first call of a shape times both routes and keeps the faster, so a machine where MKL wins keeps
MKL. The weight's gradient (a product over the frames, ``grad^T x``) stays with MKL: oneDNN would
need both operands transposed in memory first.
"""

import time

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlib.torch_internals import onednn_linear_available, onednn_product

ENABLED = True  # tests and benchmarks switch the route here
CALIBRATION_RUNS = 3
_route_cache: dict[tuple, bool] = {}


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """:func:`torch.nn.functional.linear`, through oneDNN when that was measured faster here.

    >>> x, w = torch.randn(4, 7, 5), torch.randn(3, 5)
    >>> torch.allclose(linear(x, w), x @ w.t(), atol=1e-5)
    True
    """
    if not _use_onednn(x, weight):
        return F.linear(x, weight, bias)
    out = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), weight)
    out = out.view(*x.shape[:-1], weight.shape[0])
    return out if bias is None else out + bias


def product_into(out: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """``out = x [N, K] @ weight [M, K]^T`` (no autograd) by the faster route for this shape.

    >>> x, w, out = torch.randn(6, 4), torch.randn(3, 4), torch.empty(6, 5)
    >>> torch.allclose(product_into(out[:, :3], x, w), x @ w.t(), atol=1e-6)
    True
    """
    if _use_onednn(x, weight):
        return out.copy_(onednn_product(x, weight))
    return torch.mm(x, weight.t(), out=out)


def _use_onednn(x: Tensor, weight: Tensor) -> bool:
    if not (
        ENABLED
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and onednn_linear_available()
    ):
        return False
    key = (*weight.shape, torch.get_num_threads())
    if key not in _route_cache:
        _route_cache[key] = _onednn_is_faster(x.detach().reshape(-1, x.shape[-1]), weight.detach())
    return _route_cache[key]


def _onednn_is_faster(x: Tensor, weight: Tensor) -> bool:
    """Time both routes on the first real input of this shape (once per process)."""
    best = {}
    for name, product in (("onednn", onednn_product), ("blas", lambda a, w: a @ w.t())):
        times = []
        for _ in range(CALIBRATION_RUNS):
            start = time.perf_counter()
            product(x, weight)
            times.append(time.perf_counter() - start)
        best[name] = min(times[1:])
    return best["onednn"] < best["blas"]


class _OneDNNLinear(torch.autograd.Function):
    """``x [N, K] -> x W^T``; backward ``grad W`` by oneDNN, ``grad^T x`` by the BLAS."""

    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x, weight)
        return onednn_product(x, weight)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = onednn_product(grad, weight.t()) if ctx.needs_input_grad[0] else None
        grad_weight = grad.t().mm(x) if ctx.needs_input_grad[1] else None
        return grad_x, grad_weight
