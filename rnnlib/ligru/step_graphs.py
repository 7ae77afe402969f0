"""Chunks of recurrence steps replayed as CUDA graphs: no per-step work on the host.

A chunk is a fixed number of step kernels whose only changing argument is a small ``int64``
*table* on the device: the data pointers of the call, its length, and the step counter, which
the chunk's last kernel advances. Captured once per shape (the ``key``) as a CUDA graph, one
chunk serves any length and any tensors: a call writes its table and replays the graph
``ceil(steps / chunk)`` times. Steps past the end are masked inside the kernels.

Elsewhere (CPU tensors under Triton's interpreter, ``GRAPHS = False``, or inside a CUDA graph
the caller is capturing, which then holds the steps itself) the same chunk body is launched
eagerly: the same kernels, in the same order, with the same arguments, so a replay equals an
eager run bit for bit.

>>> import torch
>>> calls = []
>>> run_chunks(("doc",), [3, 0], 2, lambda table: calls.append(int(table[0])), torch.device("cpu"))
>>> calls
[3, 3]
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import torch
from torch import Tensor

GRAPHS = True  # replay chunks as CUDA graphs on CUDA (False: launch every chunk from Python)
CACHE_SIZE = 128  # graphs kept, least recently used dropped (a graph holds no tensor memory)
log = logging.getLogger(__name__)
_graphs: OrderedDict[Hashable, tuple[Tensor, torch.cuda.CUDAGraph | None]] = OrderedDict()


def _table(values: Sequence[int], device: torch.device, capturing: bool = False) -> Tensor:
    if not capturing:
        return torch.tensor(values, dtype=torch.int64).to(device)
    table = torch.empty(len(values), dtype=torch.int64, device=device)
    for slot, value in enumerate(values):  # fills, not a copy from the host: capturable
        table[slot].fill_(value)
    return table


def _capture(body: Callable[[Tensor], None], table: Tensor) -> torch.cuda.CUDAGraph | None:
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            body(table)
    except RuntimeError as error:
        log.warning("Light GRU: CUDA graph capture failed (%s); chunks run from Python", error)
        return None
    return graph


def run_chunks(
    key: Hashable,
    values: Sequence[int],
    chunks: int,
    body: Callable[[Tensor], None],
    device: torch.device,
) -> None:
    """Run ``body(table)`` ``chunks`` times on a device table holding ``values``.

    ``body`` launches one chunk's kernels, reading everything that changes from ``table``; it
    must depend on nothing but ``key`` otherwise, since a captured graph replays it for every
    later call with the same ``key``.
    """
    capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    if device.type != "cuda" or not GRAPHS or capturing:
        table = _table(values, device, capturing)
        for _ in range(chunks):
            body(table)
        return
    key = (key, device)
    if key in _graphs:
        table, graph = _graphs[key]
        _graphs.move_to_end(key)
        table.copy_(torch.tensor(values, dtype=torch.int64))
    else:
        table = _table(values, device)
        body(table)  # the first chunk, eagerly: compiles the kernels before any capture
        chunks -= 1
        graph = _capture(body, table)
        _graphs[key] = table, graph
        if len(_graphs) > CACHE_SIZE:
            _graphs.popitem(last=False)
    for _ in range(chunks):
        if graph is None:
            body(table)
        else:
            graph.replay()


def clear() -> None:
    """Drop every captured graph."""
    _graphs.clear()
