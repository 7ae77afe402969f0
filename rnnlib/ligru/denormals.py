"""Flush denormal floats to zero while the Light GRU's loops run on a CPU.

With a ReLU candidate, a unit whose candidate is 0 keeps ``z_t h_{t-1}``: its state decays
geometrically and after a few hundred frames falls below float32's smallest normal number
(``1.2e-38``). Products that read such denormal numbers take a slow microcode path on Intel CPUs:
an SLi-GRU inference of 8 x 300 frames (``scripts/bench_rnn.py``'s S) took 178 ms instead of 33 ms
on an Intel Xeon with AVX-512, 1.9x ``torch.nn.GRU`` instead of 0.55x. The same happens to the
gradient ``dh`` in the backward loop.

The loops therefore run with the CPU's flush-to-zero and denormals-are-zero modes on
(``torch.set_flush_denormal``), as TensorFlow's op threads do. It is a fixed arithmetic mode,
not a choice by timing: only numbers below ``1.2e-38`` change (to zero), and they change on every
run and every machine alike. The mode belongs to a thread; :func:`flush_denormals` sets it for the
calling thread and restores what was there.
"""

import contextlib
from collections.abc import Iterator

import torch

SMALLEST_NORMAL = torch.finfo(torch.float32).tiny


def flushing_denormals() -> bool:
    """Whether this thread flushes float32 denormals to zero now.

    >>> with flush_denormals():
    ...     flushing_denormals()
    True
    """
    denormal = torch.tensor(SMALLEST_NORMAL / 4)  # 0 already if the conversion flushes
    return bool(denormal.mul(1.0).item() == 0.0)


@contextlib.contextmanager
def flush_denormals(enabled: bool = True) -> Iterator[None]:
    """Within the block this thread's float arithmetic flushes denormals to zero (where the CPU
    can: x86 with SSE3; elsewhere nothing changes); afterwards the thread's mode is as before.

    >>> before = flushing_denormals()
    >>> with flush_denormals():
    ...     torch.tensor(1e-39).item()
    0.0
    >>> flushing_denormals() == before
    True
    """
    if not enabled or flushing_denormals():
        yield
        return
    supported = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(False)
