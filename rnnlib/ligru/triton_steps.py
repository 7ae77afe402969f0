r"""Triton step kernels of the Light GRU recurrence: the GPU route of the loops over time.

The CPU loops (:mod:`rnnlib.ligru.cpu_kernel`) launch a product and a few element-wise operators
per step. Here a step is one or two kernels:

- forward, LiGRU: one kernel per step. Each program owns a block of rows and a block of units
  ``j``; it computes both gate rows of ``U h_{t-1}`` for its units (``j`` and ``H + j``), adds
  ``a``, applies the sigmoid, the candidate nonlinearity and the recurrent-dropout mask,
  interpolates, holds the state on padded frames, and writes ``h_t`` and the pre-activations.
- forward, SLi-GRU: the layer norm of ``U h_{t-1}`` needs a whole row, so the product runs first
  (blocks of rows by blocks of ``2H``) and a second kernel, one program per row, normalises and
  does the gate arithmetic.
- backward: one kernel per row turns the chunk's coefficients into ``dgates_t = coef_t * dh_t``
  (SLi-GRU: and the layer norm's input gradient), then a product kernel writes
  ``dh_{t-1} = dh_t * zeta_t + dgates_t U + (the output's gradient at t-1)``.

The kernels take no tensor and no step index from the host: both come from an ``int64`` table
on the device (pointers, the length, the step counter; the ``_SLOT`` constants), and
``STEPS_PER_CHUNK`` steps are launched as one chunk whose last kernel advances the counter, so
that :mod:`rnnlib.ligru.step_graphs` can capture a chunk once per shape as a CUDA graph and
replay it for any length and any tensors. Steps past the end (or, backward, before the start)
do nothing, except that the backward's dead steps pass ``dh`` on unchanged.

Products run with ``input_precision="ieee"`` (true float32; Triton's default would be TF32)
unless ``tf32`` is asked for, or in ``dot_dtype`` (bfloat16 / float16 under autocast, float32
accumulation). Reductions are fixed trees inside one program: no atomics, results repeat bit for
bit. The kernels run on CPU tensors under ``TRITON_INTERPRET=1`` (how the tests check them).

Only :mod:`rnnlib.ligru.loop_route` imports this module, once the route is chosen.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from rnnlib.ligru import step_graphs
from rnnlib.ligru.pointwise import LAYER_NORM_EPS, LEAKY_RELU_SLOPE, NONLINEARITIES

ROW_BLOCK = 16  # tl.dot's smallest block: rows past the batch are masked
UNIT_BLOCK = 32
K_BLOCK = 32
STEPS_PER_CHUNK = 16  # even: the backward's two dh buffers end each chunk where they began
_TL_DTYPES = {None: None, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


@triton.jit
def _activate(x, NONLINEARITY: tl.constexpr, SLOPE: tl.constexpr):
    """The candidate nonlinearity ``f`` by index into ``NONLINEARITIES``."""
    if NONLINEARITY == 0:
        y = tl.maximum(x, 0.0)
    elif NONLINEARITY == 1:
        y = tl.where(x > 0, x, x * SLOPE)
    elif NONLINEARITY == 2:
        y = 2.0 * tl.sigmoid(2.0 * x) - 1.0
    else:
        y = tl.sin(x)
    return y


@triton.jit
def _dot(x, w, PRECISION: tl.constexpr, DOT_DTYPE: tl.constexpr):
    """``x @ w`` accumulated in float32, the operands in ``DOT_DTYPE`` when it is given."""
    if DOT_DTYPE is not None:
        return tl.dot(x.to(DOT_DTYPE), w.to(DOT_DTYPE), out_dtype=tl.float32)
    return tl.dot(x, w, input_precision=PRECISION)


# the table's slots
_T0_SLOT = tl.constexpr(0)  # the step of the chunk's first kernel (forward: up, backward: down)
_STEPS_SLOT = tl.constexpr(1)  # T
_START_SLOT = tl.constexpr(2)  # backward: the first step of the coefficient chunk
_CHUNK_SLOT = tl.constexpr(3)  # backward: the steps the coefficient buffer has room for
_GATES_SLOT = tl.constexpr(4)
_STATES_SLOT = tl.constexpr(5)
_WEIGHT_SLOT = tl.constexpr(6)
_LENGTHS_SLOT = tl.constexpr(7)
_DROP_SLOT = tl.constexpr(8)
_U_SLOT = tl.constexpr(9)
_MEAN_SLOT = tl.constexpr(10)
_RSTD_SLOT = tl.constexpr(11)
_ZETA_SLOT = tl.constexpr(12)
_GRAD_OUT_SLOT = tl.constexpr(13)
_DH_SLOTS = (14, 15)
_TABLE_SIZE = 16


@triton.jit
def _pointer(table, slot, DTYPE: tl.constexpr):
    """The pointer in ``table[slot]``."""
    return tl.load(table + slot).to(tl.pointer_type(DTYPE))


@triton.jit
def _advance_clock(table, delta):
    tl.store(table + _T0_SLOT, tl.load(table + _T0_SLOT) + delta)


@triton.jit
def _forward_step_fused(
    table,  # gates [D, T, B, 2H] (a in, pre-activations out), states [D, T + 1, B, H],
    #         weight [D, 2H, H], lengths [B] int32 (HAS_LENGTHS), drop [D, B, H] (HAS_DROP)
    k,
    rows,
    hidden,
    HAS_LENGTHS: tl.constexpr,
    HAS_DROP: tl.constexpr,
    NONLINEARITY: tl.constexpr,
    SLOPE: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    BB: tl.constexpr,
    BJ: tl.constexpr,
    BK: tl.constexpr,
):
    t = tl.load(table + _T0_SLOT) + k
    steps = tl.load(table + _STEPS_SLOT)
    gates = _pointer(table, _GATES_SLOT, tl.float32)
    states = _pointer(table, _STATES_SLOT, tl.float32)
    weight = _pointer(table, _WEIGHT_SLOT, tl.float32)
    d = tl.program_id(0)
    b = tl.program_id(1) * BB + tl.arange(0, BB)
    j = tl.program_id(2) * BJ + tl.arange(0, BJ)
    row_ok = (b < rows) & (t < steps)
    unit_ok = j < hidden
    ok = row_ok[:, None] & unit_ok[None, :]
    h_prev_base = states + (d * (steps + 1) + t) * rows * hidden
    w_base = weight + d * 2 * hidden * hidden
    acc_z = tl.zeros((BB, BJ), dtype=tl.float32)
    acc_c = tl.zeros((BB, BJ), dtype=tl.float32)
    for k0 in range(0, hidden, BK):
        kk = k0 + tl.arange(0, BK)
        k_ok = kk < hidden
        h = tl.load(
            h_prev_base + b[:, None] * hidden + kk[None, :],
            mask=row_ok[:, None] & k_ok[None, :],
            other=0.0,
        )
        w_ok = k_ok[:, None] & unit_ok[None, :]
        w_z = tl.load(w_base + j[None, :] * hidden + kk[:, None], mask=w_ok, other=0.0)
        w_c = tl.load(w_base + (hidden + j[None, :]) * hidden + kk[:, None], mask=w_ok, other=0.0)
        acc_z += _dot(h, w_z, PRECISION, DOT_DTYPE)
        acc_c += _dot(h, w_c, PRECISION, DOT_DTYPE)
    g_base = gates + ((d * steps + t) * rows + b[:, None]) * 2 * hidden + j[None, :]
    pre_z = tl.load(g_base, mask=ok, other=0.0) + acc_z
    pre_c = tl.load(g_base + hidden, mask=ok, other=0.0) + acc_c
    tl.store(g_base, pre_z, mask=ok)
    tl.store(g_base + hidden, pre_c, mask=ok)
    z = tl.sigmoid(pre_z)
    c = _activate(pre_c, NONLINEARITY, SLOPE)
    if HAS_DROP:
        drop = _pointer(table, _DROP_SLOT, tl.float32)
        c *= tl.load(drop + (d * rows + b[:, None]) * hidden + j[None, :], mask=ok, other=0.0)
    h_prev = tl.load(h_prev_base + b[:, None] * hidden + j[None, :], mask=ok, other=0.0)
    h_new = c + z * (h_prev - c)
    if HAS_LENGTHS:
        lengths = _pointer(table, _LENGTHS_SLOT, tl.int32)
        length = tl.load(lengths + b, mask=row_ok, other=0)
        h_new = tl.where((t < length)[:, None], h_new, h_prev)
    tl.store(h_prev_base + rows * hidden + b[:, None] * hidden + j[None, :], h_new, mask=ok)


@triton.jit
def _forward_step_product(
    table,  # states [D, T + 1, B, H], weight [D, 2H, H], u [D, B, 2H] (written)
    k,
    rows,
    hidden,
    PRECISION: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    BB: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
):
    """``u[d] = h_{t-1}[d] @ weight[d]^T``: the product of an SLi-GRU step."""
    t = tl.load(table + _T0_SLOT) + k
    steps = tl.load(table + _STEPS_SLOT)
    states = _pointer(table, _STATES_SLOT, tl.float32)
    weight = _pointer(table, _WEIGHT_SLOT, tl.float32)
    u = _pointer(table, _U_SLOT, tl.float32)
    d = tl.program_id(0)
    b = tl.program_id(1) * BB + tl.arange(0, BB)
    n = tl.program_id(2) * BN + tl.arange(0, BN)
    row_ok = (b < rows) & (t < steps)
    n_ok = n < 2 * hidden
    h_base = states + (d * (steps + 1) + t) * rows * hidden
    w_base = weight + d * 2 * hidden * hidden
    acc = tl.zeros((BB, BN), dtype=tl.float32)
    for k0 in range(0, hidden, BK):
        kk = k0 + tl.arange(0, BK)
        k_ok = kk < hidden
        x = tl.load(
            h_base + b[:, None] * hidden + kk[None, :],
            mask=row_ok[:, None] & k_ok[None, :],
            other=0.0,
        )
        w_ok = k_ok[:, None] & n_ok[None, :]
        w = tl.load(w_base + n[None, :] * hidden + kk[:, None], mask=w_ok, other=0.0)
        acc += _dot(x, w, PRECISION, DOT_DTYPE)
    ok = row_ok[:, None] & n_ok[None, :]
    tl.store(u + (d * rows + b[:, None]) * 2 * hidden + n[None, :], acc, mask=ok)


@triton.jit
def _forward_step_normed(
    table,  # gates, states, u (this step's U h_{t-1}), lengths, drop: as in the fused step
    k,
    rows,
    hidden,
    eps,
    HAS_LENGTHS: tl.constexpr,
    HAS_DROP: tl.constexpr,
    NONLINEARITY: tl.constexpr,
    SLOPE: tl.constexpr,
    BH: tl.constexpr,
):
    """One row of an SLi-GRU step: ``LN(u)``, the gates and the new state."""
    t = tl.load(table + _T0_SLOT) + k
    steps = tl.load(table + _STEPS_SLOT)
    gates = _pointer(table, _GATES_SLOT, tl.float32)
    states = _pointer(table, _STATES_SLOT, tl.float32)
    u = _pointer(table, _U_SLOT, tl.float32)
    d = tl.program_id(0)
    b = tl.program_id(1)
    j = tl.arange(0, BH)
    unit_ok = (j < hidden) & (t < steps)
    u_base = u + (d * rows + b) * 2 * hidden
    u_z = tl.load(u_base + j, mask=unit_ok, other=0.0)
    u_c = tl.load(u_base + hidden + j, mask=unit_ok, other=0.0)
    mean = (tl.sum(u_z, axis=0) + tl.sum(u_c, axis=0)) / (2 * hidden)
    dz = tl.where(unit_ok, u_z - mean, 0.0)
    dc = tl.where(unit_ok, u_c - mean, 0.0)
    var = (tl.sum(dz * dz, axis=0) + tl.sum(dc * dc, axis=0)) / (2 * hidden)
    rstd = 1.0 / tl.sqrt(var + eps)
    g_base = gates + ((d * steps + t) * rows + b) * 2 * hidden
    pre_z = tl.load(g_base + j, mask=unit_ok, other=0.0) + dz * rstd
    pre_c = tl.load(g_base + hidden + j, mask=unit_ok, other=0.0) + dc * rstd
    tl.store(g_base + j, pre_z, mask=unit_ok)
    tl.store(g_base + hidden + j, pre_c, mask=unit_ok)
    z = tl.sigmoid(pre_z)
    c = _activate(pre_c, NONLINEARITY, SLOPE)
    if HAS_DROP:
        drop = _pointer(table, _DROP_SLOT, tl.float32)
        c *= tl.load(drop + (d * rows + b) * hidden + j, mask=unit_ok, other=0.0)
    h_base = states + ((d * (steps + 1) + t) * rows + b) * hidden
    h_prev = tl.load(h_base + j, mask=unit_ok, other=0.0)
    h_new = c + z * (h_prev - c)
    if HAS_LENGTHS:
        lengths = _pointer(table, _LENGTHS_SLOT, tl.int32)
        h_new = tl.where(t < tl.load(lengths + b), h_new, h_prev)
    tl.store(h_base + rows * hidden + j, h_new, mask=unit_ok)


@triton.jit
def _backward_step_rows(
    table,  # gates: the coefficients in, dgates out (step t); u [D, T, B, 2H] (NORMED): U h_{t-1}
    #         in, the layer norm's input gradient out; mean, rstd [D, T, B] (NORMED)
    k,
    dh_slot,  # dh [D, B, H]: the gradient of h_t
    rows,
    hidden,
    NORMED: tl.constexpr,
    BH: tl.constexpr,
):
    """One row of a backward step: ``dgates_t = coef_t * [dh_t, dh_t]`` (SLi-GRU: and ``du``)."""
    t = tl.load(table + _T0_SLOT) - k
    steps = tl.load(table + _STEPS_SLOT)
    live = t >= tl.load(table + _START_SLOT)
    grad_gates = _pointer(table, _GATES_SLOT, tl.float32)
    dh = _pointer(table, dh_slot, tl.float32)
    d = tl.program_id(0)
    b = tl.program_id(1)
    j = tl.arange(0, BH)
    unit_ok = (j < hidden) & live
    g_base = grad_gates + ((d * steps + t) * rows + b) * 2 * hidden
    grad = tl.load(dh + (d * rows + b) * hidden + j, mask=unit_ok, other=0.0)
    dg_z = tl.load(g_base + j, mask=unit_ok, other=0.0) * grad
    dg_c = tl.load(g_base + hidden + j, mask=unit_ok, other=0.0) * grad
    tl.store(g_base + j, dg_z, mask=unit_ok)
    tl.store(g_base + hidden + j, dg_c, mask=unit_ok)
    if NORMED:
        u = _pointer(table, _U_SLOT, tl.float32)
        stat = (d * steps + t) * rows + b
        mu = tl.load(_pointer(table, _MEAN_SLOT, tl.float32) + stat, mask=live, other=0.0)
        r = tl.load(_pointer(table, _RSTD_SLOT, tl.float32) + stat, mask=live, other=0.0)
        u_base = u + stat * 2 * hidden
        x_z = tl.where(unit_ok, (tl.load(u_base + j, mask=unit_ok, other=0.0) - mu) * r, 0.0)
        x_c = tl.where(
            unit_ok, (tl.load(u_base + hidden + j, mask=unit_ok, other=0.0) - mu) * r, 0.0
        )
        n = 2 * hidden
        mean_dg = (tl.sum(dg_z, axis=0) + tl.sum(dg_c, axis=0)) / n
        mean_dgx = (tl.sum(dg_z * x_z, axis=0) + tl.sum(dg_c * x_c, axis=0)) / n
        tl.store(u_base + j, r * (dg_z - mean_dg - x_z * mean_dgx), mask=unit_ok)
        tl.store(u_base + hidden + j, r * (dg_c - mean_dg - x_c * mean_dgx), mask=unit_ok)


@triton.jit
def _backward_step_product(
    table,  # gates (dgates) or, NORMED, u (du) of step t; weight; zeta [D, C, B, H] (step t at
    #         t - start); grad_out [D, T, B, H]
    k,
    dh_slot,  # dh_t [D, B, H]
    prev_slot,  # dh_{t-1} [D, B, H]: written (a dead step copies dh_t)
    rows,
    hidden,
    NORMED: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    BB: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
):
    """``dh_{t-1} = dh_t * zeta_t + source_t U + grad_out_{t-1}`` (no output term at t = 0)."""
    t = tl.load(table + _T0_SLOT) - k
    steps = tl.load(table + _STEPS_SLOT)
    start = tl.load(table + _START_SLOT)
    chunk = tl.load(table + _CHUNK_SLOT)
    live = t >= start
    source = _pointer(table, _U_SLOT if NORMED else _GATES_SLOT, tl.float32)
    weight = _pointer(table, _WEIGHT_SLOT, tl.float32)
    zeta = _pointer(table, _ZETA_SLOT, tl.float32)
    grad_out = _pointer(table, _GRAD_OUT_SLOT, tl.float32)
    dh = _pointer(table, dh_slot, tl.float32)
    dh_prev = _pointer(table, prev_slot, tl.float32)
    d = tl.program_id(0)
    b = tl.program_id(1) * BB + tl.arange(0, BB)
    n = tl.program_id(2) * BN + tl.arange(0, BN)
    row_ok = b < rows
    n_ok = n < hidden
    ok = row_ok[:, None] & n_ok[None, :]
    s_base = source + (d * steps + t) * rows * 2 * hidden
    w_base = weight + d * 2 * hidden * hidden
    acc = tl.zeros((BB, BN), dtype=tl.float32)
    for k0 in range(0, 2 * hidden, BK):
        kk = k0 + tl.arange(0, BK)
        k_ok = kk < 2 * hidden
        x = tl.load(
            s_base + b[:, None] * 2 * hidden + kk[None, :],
            mask=(row_ok & live)[:, None] & k_ok[None, :],
            other=0.0,
        )
        w_ok = k_ok[:, None] & n_ok[None, :]
        w = tl.load(w_base + kk[:, None] * hidden + n[None, :], mask=w_ok, other=0.0)
        acc += _dot(x, w, PRECISION, DOT_DTYPE)
    unit = (d * rows + b[:, None]) * hidden + n[None, :]
    grad = tl.load(dh + unit, mask=ok, other=0.0)
    factor = tl.load(
        zeta + ((d * chunk + t - start) * rows + b[:, None]) * hidden + n[None, :],
        mask=ok & live,
        other=0.0,
    )
    acc += grad * factor
    acc += tl.load(
        grad_out + ((d * steps + t - 1) * rows + b[:, None]) * hidden + n[None, :],
        mask=ok & live & (t > 0),
        other=0.0,
    )
    tl.store(dh_prev + unit, tl.where(live, acc, grad), mask=ok)


def _row_block(rows: int) -> int:
    return max(ROW_BLOCK, min(64, triton.next_power_of_2(rows)))


def _precision(tf32: bool) -> str:
    return "tf32" if tf32 else "ieee"


def _table_values(
    t0: int, steps: int, tensors: dict[int, Tensor | None], start: int = 0, chunk: int = 0
) -> list[int]:
    """The table: the clock, the lengths and each tensor's address in its slot (0: none)."""
    values = [0] * _TABLE_SIZE
    values[_T0_SLOT.value], values[_STEPS_SLOT.value] = t0, steps
    values[_START_SLOT.value], values[_CHUNK_SLOT.value] = start, chunk
    for slot, tensor in tensors.items():
        if tensor is not None:
            values[getattr(slot, "value", slot)] = tensor.data_ptr()
    return values


def forward_loop(
    gates: Tensor,
    states: Tensor,
    weight_hh: Tensor,
    lengths: Tensor | None,
    drop_mask: Tensor | None,
    nonlinearity: str,
    recurrent_norm: bool,
    product_dtype: torch.dtype | None = None,
    tf32: bool = False,
) -> None:
    """The forward loop of :func:`rnnlib.ligru.cpu_kernel._forward_loop` as Triton steps.

    ``gates [D, T, B, 2H]`` (``a`` in, pre-activations out), ``states [D, T + 1, B, H]``
    (``states[:, 0] = h0``), ``weight_hh [D, 2H, H]``, all contiguous float32; ``lengths [B]``
    int32 valid frames per row (a prefix) or None; ``drop_mask [D, B, H]`` or None.
    """
    directions, steps, rows, two_hidden = gates.shape
    hidden = two_hidden // 2
    weight = weight_hh.contiguous()
    drop = None if drop_mask is None else drop_mask.contiguous()
    u = states.new_empty(directions, rows, two_hidden) if recurrent_norm else None
    flags = dict(
        HAS_LENGTHS=lengths is not None,
        HAS_DROP=drop_mask is not None,
        NONLINEARITY=NONLINEARITIES.index(nonlinearity),
        SLOPE=LEAKY_RELU_SLOPE,
    )
    dot = dict(PRECISION=_precision(tf32), DOT_DTYPE=_TL_DTYPES[product_dtype])
    per_chunk = STEPS_PER_CHUNK
    bb = _row_block(rows)
    row_blocks = triton.cdiv(rows, bb)
    fused_grid = (directions, row_blocks, triton.cdiv(hidden, UNIT_BLOCK))
    product_grid = (directions, row_blocks, triton.cdiv(two_hidden, UNIT_BLOCK))
    row_grid = (directions, rows)
    block_hidden = triton.next_power_of_2(hidden)

    def chunk(table: Tensor) -> None:
        for k in range(per_chunk):
            if not recurrent_norm:
                _forward_step_fused[fused_grid](
                    table, k, rows, hidden, **flags, **dot, BB=bb, BJ=UNIT_BLOCK, BK=K_BLOCK
                )
                continue
            _forward_step_product[product_grid](
                table, k, rows, hidden, **dot, BB=bb, BN=UNIT_BLOCK, BK=K_BLOCK
            )
            _forward_step_normed[row_grid](
                table, k, rows, hidden, LAYER_NORM_EPS, **flags, BH=block_hidden
            )
        _advance_clock[(1,)](table, per_chunk)

    tensors = {
        _GATES_SLOT: gates, _STATES_SLOT: states, _WEIGHT_SLOT: weight, _LENGTHS_SLOT: lengths,
        _DROP_SLOT: drop, _U_SLOT: u,
    }  # fmt: skip
    key = ("forward", recurrent_norm, directions, rows, hidden, per_chunk, *flags.values())
    key += (*dot.values(),)
    values = _table_values(0, steps, tensors)
    step_graphs.run_chunks(key, values, triton.cdiv(steps, per_chunk), chunk, gates.device)


def backward_chunk(
    grad_gates: Tensor,
    zeta: Tensor,
    weight_hh: Tensor,
    grad_out: Tensor,
    dh: Tensor,
    start: int,
    end: int,
    u: Tensor | None = None,
    mean: Tensor | None = None,
    rstd: Tensor | None = None,
    product_dtype: torch.dtype | None = None,
    tf32: bool = False,
) -> Tensor:
    """Steps ``end - 1`` down to ``start`` of the backward loop; returns ``dh_start``'s successor
    ``dh_{start-1}`` (at ``start = 0``: the gradient of ``h0``), in ``dh``'s buffer.

    ``grad_gates [D, T, B, 2H]`` holds the coefficients of the chunk's steps on entry and their
    ``dgates`` on exit; ``zeta [D, C, B, H]`` the chunk's factors; ``grad_out [D, T, B, H]``
    (zero on padded frames); ``dh [D, B, H]`` the gradient of ``h_{end-1}`` (overwritten).
    SLi-GRU passes ``u [D, T, B, 2H]`` (overwritten with the layer norm's input gradient) and
    its per-row ``mean``, ``rstd`` ``[D, T, B]``.
    """
    directions, steps, rows, two_hidden = grad_gates.shape
    hidden = two_hidden // 2
    normed = u is not None
    weight = weight_hh.contiguous()
    dh = dh.contiguous()
    spare = torch.empty_like(dh)
    dot = dict(PRECISION=_precision(tf32), DOT_DTYPE=_TL_DTYPES[product_dtype])
    per_chunk = STEPS_PER_CHUNK
    bb = _row_block(rows)
    product_grid = (directions, triton.cdiv(rows, bb), triton.cdiv(hidden, UNIT_BLOCK))
    row_grid = (directions, rows)
    block_hidden = triton.next_power_of_2(hidden)

    def chunk(table: Tensor) -> None:
        for k in range(per_chunk):
            current, previous = _DH_SLOTS if k % 2 == 0 else _DH_SLOTS[::-1]
            _backward_step_rows[row_grid](
                table, k, current, rows, hidden, NORMED=normed, BH=block_hidden
            )
            _backward_step_product[product_grid](
                table, k, current, previous, rows, hidden, NORMED=normed, **dot,
                BB=bb, BN=UNIT_BLOCK, BK=K_BLOCK,
            )  # fmt: skip
        _advance_clock[(1,)](table, -per_chunk)

    tensors = {
        _GATES_SLOT: grad_gates, _WEIGHT_SLOT: weight, _U_SLOT: u, _MEAN_SLOT: mean,
        _RSTD_SLOT: rstd, _ZETA_SLOT: zeta, _GRAD_OUT_SLOT: grad_out, _DH_SLOTS[0]: dh,
        _DH_SLOTS[1]: spare,
    }  # fmt: skip
    capacity = zeta.stride(0) // (rows * hidden)  # zeta may be the first steps of a larger buffer
    values = _table_values(end - 1, steps, tensors, start, capacity)
    key = ("backward", normed, directions, rows, hidden, per_chunk, *dot.values())
    step_graphs.run_chunks(key, values, triton.cdiv(end - start, per_chunk), chunk, dh.device)
    return dh  # an even number of steps ends each chunk back in dh's buffer
