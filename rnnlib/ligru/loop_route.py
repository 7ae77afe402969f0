"""Which implementation runs the Light GRU's loops over time: Python, C++ or Triton steps.

- ``torch``: :func:`rnnlib.ligru.cpu_kernel._forward_loop` and its backward, a product and a few
  element-wise operators per step, called from Python; runs on every device.
- ``cpp``: the same operators in the same order called from C++ loops
  (:mod:`rnnlib.ligru.cpp_loops`): bit-identical results without the interpreter's time per call.
  CPU tensors, every dtype and product route.
- ``triton``: :mod:`rnnlib.ligru.triton_steps`, one or two fused kernels per step, launched
  in chunks of steps that :mod:`rnnlib.ligru.step_graphs` replays as CUDA graphs.

The rule is fixed, never timed: CUDA tensors in float32 (autocast's bfloat16 / float16 products
included) take ``triton`` wherever Triton imports and runs; CPU tensors take ``cpp`` wherever
the C++ loops build and run; everything else takes ``torch``. "Runs" is checked once per device
(C++: per process), the first time the rule would pick a route there: a tiny recurrence,
forward and backward, with and without layer norm, must agree with the reference recurrence
(Triton: within 1e-4) or with the ``torch`` loops (C++: bit for bit). Where a route cannot
build or run (no C compiler, say) one log line says so and ``torch`` runs.
:func:`force_loop_route` or the ``RNNLIB_LIGRU_LOOP`` environment variable (``torch`` /
``cpp`` / ``triton``) override the rule; forcing ``triton`` on CPU tensors needs
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

from rnnlib.ligru import cpp_loops

LOOP_ROUTES = ("torch", "cpp", "triton")
ENVIRONMENT_VARIABLE = "RNNLIB_LIGRU_LOOP"
TF32 = False
_forced: str | None = None
_triton: ModuleType | None = None
_triton_error: str | None = None
_runs: dict[str, bool] = {}
_cpp_runs: bool | None = None
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
    """Output, final state and the gradients of a 2 x 5 x 4 recurrence with padding (the
    reference recurrence or the loops of the route in force)."""
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


def _agrees(route: str, device: torch.device, against: str | None, tolerance: float) -> bool:
    """Whether the tiny recurrence, with and without layer norm, run by ``route`` on ``device``
    agrees with the same run by route ``against`` (None: the reference recurrence) to within
    ``tolerance`` in every output and gradient (0: bit for bit); one warning line if not."""
    names = {"triton": "the Triton steps", "cpp": "the C++ loops"}
    try:
        with torch.inference_mode(False), torch.enable_grad():
            with torch.autocast(device.type, enabled=False):
                for norm in (False, True):
                    with force_loop_route(route):
                        got = _tiny_recurrence(device, norm, reference=False)
                    with force_loop_route(against or route):
                        expected = _tiny_recurrence(device, norm, reference=against is None)
                    pairs = zip(got, expected, strict=True)
                    error = max((g - e).abs().max().item() for g, e in pairs)
                    if not error <= tolerance:  # NaN too
                        what = f"the {against} loops" if against else "the reference recurrence"
                        raise RuntimeError(f"results differ from {what} by {error:.3g}")
    except Exception as error:  # a compiler, launcher, driver or ABI failure, or wrong numbers
        log.warning(
            "Light GRU: %s do not run on %s (%s: %s); the loops run as PyTorch operators "
            "called from Python there",
            names[route], device, type(error).__name__, error,
        )  # fmt: skip
        return False
    return True


def cpp_runs() -> bool:
    """Whether the C++ loops build and give the Python loops' results bit for bit (checked once
    per process, a few milliseconds once built; one log line if not)."""
    global _cpp_runs
    if _cpp_runs is None:
        _cpp_runs = cpp_loops.extension() is not None and _agrees(
            "cpp", torch.device("cpu"), against="torch", tolerance=0.0
        )
    return _cpp_runs


def triton_runs(device: torch.device) -> bool:
    """Whether the Triton steps compile, launch and agree with the reference recurrence on
    ``device``; checked once per device (a few milliseconds once compiled), one log line if not.
    CPU tensors run them only in Triton's interpreter."""
    if str(device) not in _runs:
        if triton_steps() is None or (device.type == "cpu" and not interpreting()):
            return False
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return False  # not now: the check cannot run inside the caller's capture
        _runs[str(device)] = _agrees("triton", device, against=None, tolerance=1e-4)
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

    >>> loop_route(torch.device("cuda"), torch.float64)
    'torch'
    """
    route = _forced or _check(os.environ.get(ENVIRONMENT_VARIABLE) or None, ENVIRONMENT_VARIABLE)
    if route == "torch":
        return route
    if route == "cpp":
        if device.type != "cpu":
            raise RuntimeError(f"the cpp loop route runs CPU tensors, not {device.type} ones")
        if cpp_loops.extension() is None:
            raise RuntimeError(f"the cpp loop route was forced, but {cpp_loops.build_error()}")
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
    if device.type == "cpu" and cpp_runs():
        return "cpp"
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
