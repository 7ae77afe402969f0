"""The small per-step product ``x W^T`` of a recurrence, routed to the fastest CPU/GPU kernel.

On CPU, for float32 and bfloat16, oneDNN's linear (``torch.ops.mkldnn``) can beat MKL's
``addmm`` on the ``[8, 512] x [512, 1024]`` product by 40% (AMD EPYC) or lose by 40% (Intel Xeon):
the first product of each shape times both routes and keeps the faster. Everything else
(float64, CUDA, builds without oneDNN) uses ``baddbmm``.
"""

import time

import torch
from torch import Tensor

from rnnlib.torch_internals import onednn_linear_available, onednn_product

ONEDNN_DTYPES = (torch.float32, torch.bfloat16)
ONEDNN_MAX_ROWS = 12  # measured: from 16 rows oneDNN takes a path 4x slower than MKL ...
ONEDNN_ROW_BLOCK = 8  # ... so more rows run as blocks of 8
ONEDNN_ENABLED = True  # tests and benchmarks switch the route here
CALIBRATION_RUNS = 5
_route_cache: dict[tuple, bool] = {}


class RecurrentProduct:
    """``x -> x W_d^T`` for fixed weights ``W [D, N, K]``, one product per direction ``d``.

    >>> w = torch.randn(2, 6, 4)
    >>> out = torch.zeros(2, 3, 6)
    >>> x = torch.randn(2, 3, 4)
    >>> RecurrentProduct(w, rows=3).add_into(out, x)
    >>> torch.allclose(out, x @ w.transpose(1, 2), atol=1e-5)
    True
    """

    def __init__(self, weight: Tensor, rows: int):
        self.weight_t = weight.transpose(1, 2)
        self.use_onednn = (
            ONEDNN_ENABLED
            and weight.device.type == "cpu"
            and weight.dtype in ONEDNN_DTYPES
            and onednn_linear_available(weight.dtype)
        )
        if self.use_onednn:
            self.weights = [w.contiguous() for w in weight.unbind(0)]
            step = rows if rows <= ONEDNN_MAX_ROWS else ONEDNN_ROW_BLOCK
            self.blocks = [slice(r, min(r + step, rows)) for r in range(0, rows, step)]
            self.single = len(self.weights) == 1 and len(self.blocks) == 1
            key = (weight.dtype, *weight.shape, rows, torch.get_num_threads())
            if key not in _route_cache:
                _route_cache[key] = self._onednn_is_faster(rows)
            self.use_onednn = _route_cache[key]

    def _onednn_is_faster(self, rows: int) -> bool:
        """Time both routes on zeros of the real shapes (a few ms, once per shape)."""
        directions, _, hidden_out = self.weight_t.shape
        x = self.weight_t.new_zeros(directions, rows, self.weight_t.shape[1])
        out = x.new_zeros(directions, rows, hidden_out)
        best = {}
        for use_onednn in (True, False):
            self.use_onednn = use_onednn
            times = []
            for _ in range(CALIBRATION_RUNS):
                start = time.perf_counter()
                self.add_into(out, x)
                times.append(time.perf_counter() - start)
            best[use_onednn] = min(times[1:])
        return best[True] < best[False]

    def add_into(self, out: Tensor, x: Tensor) -> None:
        """``out += x W^T`` with ``out [D, B, N]``, ``x [D, B, K]``."""
        if not self.use_onednn:
            out.baddbmm_(x, self.weight_t)
        elif self.single:  # one direction, one block: no per-step indexing
            out.add_(onednn_product(x, self.weights[0]))
        else:
            self._add_blocks(out, x)

    def _add_blocks(self, out: Tensor, x: Tensor) -> None:
        for d, w in enumerate(self.weights):
            for rows in self.blocks:
                out[d, rows].add_(onednn_product(x[d, rows], w))

    def __call__(self, x: Tensor) -> Tensor:
        """``x W^T`` ``[D, B, N]``."""
        if not self.use_onednn:
            return torch.bmm(x, self.weight_t)
        if self.single:
            return onednn_product(x, self.weights[0])
        out = x.new_empty(x.shape[0], x.shape[1], self.weight_t.shape[2])
        for d, w in enumerate(self.weights):
            for rows in self.blocks:
                out[d, rows] = onednn_product(x[d, rows], w)
        return out
