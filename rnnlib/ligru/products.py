"""The Light GRU's matrix products on CPU, and the one rule that picks their route.

Two libraries can run a float32 CPU product ``x W^T``: MKL (what ``torch.mm`` calls) and oneDNN
(``torch.ops.mkldnn._linear_pointwise``). Their last bits differ, so the choice must never depend
on timing or load: :func:`product_route` is a fixed rule of the CPU, the dtype and the
configuration, the same for every call of a process and every process on the same kind of machine.

The rule, from ``scripts/bench_rnn.py`` runs with both routes forced (``ligru@onednn``,
``ligru@blas``):

- float32 on AMD CPUs with AVX-512 (Zen 4): oneDNN, with the recurrent weight packed once per
  loop (:class:`RecurrentProduct`). Measured with the locked torch 2.14.1 on a Zen 4 AMD EPYC
  (family 25, 2 threads): the per-step product ``[8, 512] x [512, 1024]`` took 61 us against
  MKL's 125 us, and the whole layer step 7-27% less time in every row (S and M, training and
  inference). Unpacked, oneDNN reordered the weight at every call and was 4-13% slower than MKL.
- float32 elsewhere: MKL. On an Intel Xeon (AVX-512, AMX; 2 threads) packed oneDNN lost to
  MKL at S (LiGRU training 0.45x GRU against 0.34x, inference 0.74x against 0.53x; SLi-GRU
  0.55x / 0.91x against 0.46x / 0.71x) and tied at M (within 8%, either way). On a
  first-generation AMD EPYC (AVX2 only) oneDNN was measured only unpacked: the whole S
  training step took 356 ms against MKL's 283 ms. ``ligru@onednn`` against ``ligru@blas`` in
  ``scripts/bench_rnn.py`` is the measurement that would move a CPU.
- bfloat16 (autocast's dtype for the per-step product): oneDNN wherever it has a kernel.
- Under ``torch.use_deterministic_algorithms(True)`` (Lightning's ``deterministic: true``) and
  wherever oneDNN cannot run the dtype: MKL / ``torch.mm``.

:func:`force_route` overrides the rule (tests, benchmarks); :func:`describe_routes` says what the
rule gives here, for run records. The weight's gradient (``grad^T x``, a product over frames)
always stays with MKL: oneDNN would need both operands transposed in memory first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlib.torch_internals import onednn_linear_available, onednn_packed_weight, onednn_product

ROUTES = ("onednn", "blas")
_forced: str | None = None


def _read_cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return fields
    for line in lines:
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


# Read once, at import: constants to torch.compile's tracer (which would trace a cache's body).
_CPU_FIELDS = _read_cpuinfo()
_ONEDNN_DTYPES = tuple(dt for dt in (torch.float32, torch.bfloat16) if onednn_linear_available(dt))


def _cpuinfo() -> dict[str, str]:
    return _CPU_FIELDS


def cpu_vendor() -> str:
    """The CPU's ``vendor_id`` (``AuthenticAMD``, ``GenuineIntel``; ``unknown`` if unreadable)."""
    return _cpuinfo().get("vendor_id", "unknown")


def cpu_has_avx512() -> bool:
    """Whether the CPU has AVX-512 (the ``avx512f`` flag)."""
    return "avx512f" in _cpuinfo().get("flags", "").split()


def cpu_identity() -> dict[str, str]:
    """The CPU as ``/proc/cpuinfo`` names it: vendor, model name, family and model number
    (``unknown`` where unreadable). Another CPU can round differently (a run record names it).

    >>> sorted(cpu_identity())
    ['family', 'model', 'model_name', 'vendor']
    """
    fields = _cpuinfo()
    return {
        "vendor": cpu_vendor(),
        "model_name": fields.get("model name", "unknown"),
        "family": fields.get("cpu family", "unknown"),
        "model": fields.get("model", "unknown"),
    }


def product_route(dtype: torch.dtype = torch.float32) -> str:
    """``"onednn"`` or ``"blas"``: the route of CPU products in ``dtype`` here (never timed).

    >>> with force_route("blas"):
    ...     product_route()
    'blas'
    """
    if dtype not in _ONEDNN_DTYPES:
        return "blas"
    if _forced is not None:
        return _forced
    if torch.are_deterministic_algorithms_enabled():
        return "blas"
    if dtype == torch.bfloat16 or (cpu_vendor() == "AuthenticAMD" and cpu_has_avx512()):
        return "onednn"
    return "blas"


@contextlib.contextmanager
def force_route(route: str | None) -> Iterator[None]:
    """Within the block every product takes ``route`` where it can (``None``: the rule)."""
    global _forced
    if route not in (*ROUTES, None):
        raise ValueError(f"unknown product route {route!r}; choose one of {ROUTES} or None")
    previous, _forced = _forced, route
    try:
        yield
    finally:
        _forced = previous


def describe_routes() -> dict[str, str | bool]:
    """What the rule gives in this process, for a run record.

    >>> sorted(describe_routes())
    ['avx512', 'bfloat16', 'cpu_vendor', 'deterministic', 'float32']
    """
    return {
        "cpu_vendor": cpu_vendor(),
        "avx512": cpu_has_avx512(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "float32": product_route(torch.float32),
        "bfloat16": product_route(torch.bfloat16),
    }


def _use_onednn(x: Tensor, weight: Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == weight.dtype
        and not torch.is_autocast_enabled("cpu")
        and product_route(x.dtype) == "onednn"
    )


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """:func:`torch.nn.functional.linear` by the route of :func:`product_route`.

    >>> x, w = torch.randn(4, 7, 5), torch.randn(3, 5)
    >>> torch.allclose(linear(x, w), x @ w.t(), atol=1e-5)
    True
    """
    if x.dtype != torch.float32 or not _use_onednn(x, weight):
        return F.linear(x, weight, bias)
    out = _OneDNNLinear.apply(x.reshape(-1, x.shape[-1]), weight)
    out = out.view(*x.shape[:-1], weight.shape[0])
    return out if bias is None else out + bias


def product_into(out: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """``out = x [N, K] @ weight [M, K]^T`` (no autograd) by the route of :func:`product_route`;
    ``out`` may be float32 where ``x`` and ``weight`` are bfloat16 or float16 (mixed precision).

    >>> x, w, out = torch.randn(6, 4), torch.randn(3, 4), torch.empty(6, 5)
    >>> torch.allclose(product_into(out[:, :3], x, w), x @ w.t(), atol=1e-6)
    True
    """
    if x.dtype in (torch.float32, torch.bfloat16) and _use_onednn(x, weight):
        return out.copy_(onednn_product(x, weight))
    if out.dtype != x.dtype:
        return out.copy_(torch.mm(x, weight.t()))
    return torch.mm(x, weight.t(), out=out)


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


class RecurrentProduct:
    """``x -> x W_d^T`` for fixed weights ``W [D, N, K]``, one product per direction ``d``.

    The route is :func:`product_route` of the product's dtype, fixed when the loop starts; on
    the oneDNN route each weight is packed once, for products of ``rows`` rows. ``dtype``
    (default: the weight's) is the dtype the products run in: with bfloat16 the weights are
    cast once, each ``x`` as it comes, and the results added to a float32 ``out``.

    >>> w = torch.randn(2, 6, 4)
    >>> out = torch.zeros(2, 3, 6)
    >>> x = torch.randn(2, 3, 4)
    >>> RecurrentProduct(w, rows=3).add_into(out, x)
    >>> torch.allclose(out, x @ w.transpose(1, 2), atol=1e-5)
    True
    """

    def __init__(self, weight: Tensor, rows: int, dtype: torch.dtype | None = None):
        self.dtype = weight.dtype if dtype is None else dtype
        weight = weight.to(self.dtype)
        self.weight_t = weight.transpose(1, 2)
        on_cpu = weight.device.type == "cpu"
        self.use_onednn = on_cpu and product_route(self.dtype) == "onednn"
        # CPU bmm in bfloat16 took 5-8x mm's time per step (Intel Xeon, AVX-512 + AMX)
        self.per_direction = on_cpu and not self.use_onednn and self.dtype != torch.float32
        if self.use_onednn:
            self.weights = [onednn_packed_weight(w, rows) for w in weight.unbind(0)]

    def add_into(self, out: Tensor, x: Tensor) -> None:
        """``out += x W^T`` with ``out [D, B, N]``, ``x [D, B, K]``."""
        if out.dtype != self.dtype or self.per_direction:  # the product, then the sum
            out.add_(self(x))
        elif not self.use_onednn:
            out.baddbmm_(x, self.weight_t)
        elif len(self.weights) == 1:  # one direction: no per-step indexing
            out.add_(onednn_product(x, self.weights[0]))
        else:
            for d, w in enumerate(self.weights):
                out[d].add_(onednn_product(x[d], w))

    def into(self, out: Tensor, x: Tensor) -> Tensor:
        """``out = x W^T`` with ``out [D, B, N]`` preallocated (a loop's per-step buffer: a fresh
        result every step cost about 15 us more per ``[8, 512] x [512, 1024]`` step on an Intel
        Xeon)."""
        if out.dtype == x.dtype == self.dtype and not (self.use_onednn or self.per_direction):
            return torch.bmm(x, self.weight_t, out=out)
        return out.copy_(self(x))

    def __call__(self, x: Tensor) -> Tensor:
        """``x W^T`` ``[D, B, N]`` (in the product's dtype)."""
        x = x.to(self.dtype)
        if self.per_direction:
            return torch.stack([xd @ wd for xd, wd in zip(x, self.weight_t, strict=True)])
        if not self.use_onednn:
            return torch.bmm(x, self.weight_t)
        if len(self.weights) == 1:
            return onednn_product(x, self.weights[0])
        return torch.stack([onednn_product(xd, w) for xd, w in zip(x, self.weights, strict=True)])
