"""Which implementation runs the Light GRU's loops over time: PyTorch operators or Triton steps.

- ``torch``: :func:`rnnlib.ligru.cpu_kernel._forward_loop` and its backward, a product and a few
  element-wise operators per step; runs on every device.
- ``triton``: :mod:`rnnlib.ligru.triton_steps`, one or two fused kernels per step, launched
  in chunks of steps that :mod:`rnnlib.ligru.step_graphs` replays as CUDA graphs.

The rule is fixed, never timed: CUDA tensors in float32 (autocast's bfloat16 / float16 products
included) take ``triton`` wherever Triton imports and runs; everything else takes ``torch``.
"Runs" is checked once per device, the first time the rule would pick ``triton`` there: a tiny
recurrence, forward and backward, with and without layer norm, must compile, launch and agree
with the reference recurrence (:func:`triton_runs`). A CUDA host where Triton is missing or
broken (no C compiler for its launcher, say) logs one line and keeps ``torch``.
:func:`force_loop_route` or the ``RNNLIB_LIGRU_LOOP`` environment variable (``torch`` /
``triton``) override the rule; forcing ``triton`` on CPU tensors needs
``TRITON_INTERPRET=1`` (the tests do that). ``TF32 = True`` lets Triton's products use TF32 on
CUDA (off by default: float32 products are IEEE, bit-for-bit repeatable).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from types import ModuleType

import torch

LOOP_ROUTES = ("torch", "triton")
ENVIRONMENT_VARIABLE = "RNNLIB_LIGRU_LOOP"
TF32 = False
_forced: str | None = None
_triton: ModuleType | None = None
_triton_error: str | None = None
_runs: dict[str, bool] = {}
log = logging.getLogger(__name__)


def _check(route: str | None, source: str) -> str | None:
    if route not in (None, *LOOP_ROUTES):
        raise ValueError(f"{source}: unknown loop route {route!r}; choose one of {LOOP_ROUTES}")
    return route


def triton_steps() -> ModuleType | None:
    """The Triton step kernels' module, or None (with one log line) where Triton cannot run."""
    global _triton, _triton_error
    if _triton is None and _triton_error is None:
        try:
            module = importlib.import_module("rnnlib.ligru.triton_steps")
        except Exception as error:  # ImportError, or a broken install failing at import
            _triton_error = f"{type(error).__name__}: {error}"
            log.warning(
                "Light GRU: Triton is unavailable (%s); the loops run as PyTorch operators",
                _triton_error,
            )
        else:
            _triton = module
    return _triton


def _tiny_recurrence(device: torch.device, norm: bool, reference: bool) -> list[torch.Tensor]:
    """Output, final state and the gradients of a 2 x 5 x 4 recurrence with padding."""
    from rnnlib.ligru.recurrence import ligru_recurrence_directions  # (imports this module)

    generator = torch.Generator().manual_seed(0)

    def leaf(*shape: int, scale: float = 1.0) -> torch.Tensor:
        values = torch.randn(*shape, generator=generator) * scale
        return values.to(device).requires_grad_()

    a, weight, h0 = leaf(2, 5, 8), leaf(8, 4, scale=0.5), leaf(1, 2, 4)
    mask = (torch.arange(5) < torch.tensor([[5], [3]])).to(device)
    out, h_n = ligru_recurrence_directions(
        [a], [weight], h0, mask, "relu", norm, None, reference=reference
    )
    loss = (out * torch.linspace(-1, 1, out.numel(), device=device).view_as(out)).sum()
    return [out, h_n, *torch.autograd.grad(loss + (h_n * h_n).sum(), [a, weight, h0])]


def _check_triton(device: torch.device) -> bool:
    try:
        with torch.inference_mode(False), torch.enable_grad():
            with torch.autocast(device.type, enabled=False), force_loop_route("triton"):
                for norm in (False, True):
                    got = _tiny_recurrence(device, norm, reference=False)
                    expected = _tiny_recurrence(device, norm, reference=True)
                    pairs = zip(got, expected, strict=True)
                    error = max((g - e).abs().max().item() for g, e in pairs)
                    if not error <= 1e-4:  # NaN too
                        raise RuntimeError(f"results differ from the reference by {error:.3g}")
    except Exception as error:  # a compiler, launcher or driver failure, or wrong numbers
        log.warning(
            "Light GRU: the Triton steps do not run on %s (%s: %s); the loops run as PyTorch "
            "operators there",
            device, type(error).__name__, error,
        )  # fmt: skip
        return False
    return True


def triton_runs(device: torch.device) -> bool:
    """Whether the Triton steps compile, launch and agree with the reference recurrence on
    ``device``; checked once per device (a few milliseconds once compiled), one log line if not.
    CPU tensors run them only in Triton's interpreter."""
    if str(device) not in _runs:
        if triton_steps() is None or (device.type == "cpu" and not interpreting()):
            return False
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return False  # not now: the check cannot run inside the caller's capture
        _runs[str(device)] = _check_triton(device)
    return _runs[str(device)]


def interpreting() -> bool:
    """Whether Triton kernels run in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _interpreter_took_effect() -> bool:
    """Whether ``triton.language`` was built for the interpreter: Triton reads
    ``TRITON_INTERPRET`` once, when that module is first imported (Lightning's import does it)."""
    language = sys.modules.get("triton.language")
    return language is None or type(language.zeros).__name__ == "InterpretedFunction"


def loop_route(device: torch.device, dtype: torch.dtype) -> str:
    """The loop route for states of ``dtype`` on ``device`` (see the module's rule).

    >>> loop_route(torch.device("cpu"), torch.float32)
    'torch'
    """
    route = _forced or _check(os.environ.get(ENVIRONMENT_VARIABLE) or None, ENVIRONMENT_VARIABLE)
    if route == "torch":
        return route
    if route == "triton":
        if device.type != "cuda" and not interpreting():
            raise RuntimeError(
                "the triton loop route runs CUDA tensors, or CPU tensors under TRITON_INTERPRET=1"
            )
        if device.type != "cuda" and not _interpreter_took_effect():
            raise RuntimeError(
                "TRITON_INTERPRET=1 was set after Triton was imported, so its kernels cannot run "
                "on CPU tensors; set it in the environment before starting Python"
            )
        if dtype != torch.float32:
            raise RuntimeError(f"the triton loop route keeps float32 states, not {dtype}")
        if triton_steps() is None:
            raise RuntimeError(f"the triton loop route was forced, but {_triton_error}")
        return route
    if device.type == "cuda" and dtype == torch.float32 and triton_runs(device):
        return "triton"
    return "torch"


@contextlib.contextmanager
def force_loop_route(route: str | None) -> Iterator[None]:
    """Use ``route`` for every loop inside the block (None: the rule).

    >>> with force_loop_route("torch"):
    ...     loop_route(torch.device("cpu"), torch.float32)
    'torch'
    """
    global _forced
    previous, _forced = _forced, _check(route, "force_loop_route")
    try:
        yield
    finally:
        _forced = previous
