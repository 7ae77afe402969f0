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

from rnnlib.ligru.pointwise import LAYER_NORM_EPS, LEAKY_RELU_SLOPE, NONLINEARITIES

ROW_BLOCK = 16  # tl.dot's smallest block: rows past the batch are masked
UNIT_BLOCK = 32
K_BLOCK = 32
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


@triton.jit
def _forward_step_fused(
    gates,  # [D, T, B, 2H]: a on entry, the pre-activations on exit
    states,  # [D, T + 1, B, H]
    weight,  # [D, 2H, H]
    lengths,  # [B] int32 (HAS_LENGTHS)
    drop,  # [D, B, H] (HAS_DROP)
    t,
    rows,
    hidden,
    steps,
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
    d = tl.program_id(0)
    b = tl.program_id(1) * BB + tl.arange(0, BB)
    j = tl.program_id(2) * BJ + tl.arange(0, BJ)
    row_ok = b < rows
    unit_ok = j < hidden
    ok = row_ok[:, None] & unit_ok[None, :]
    h_prev_base = states + (d * (steps + 1) + t) * rows * hidden
    w_base = weight + d * 2 * hidden * hidden
    acc_z = tl.zeros((BB, BJ), dtype=tl.float32)
    acc_c = tl.zeros((BB, BJ), dtype=tl.float32)
    for k0 in range(0, hidden, BK):
        k = k0 + tl.arange(0, BK)
        k_ok = k < hidden
        h = tl.load(
            h_prev_base + b[:, None] * hidden + k[None, :],
            mask=row_ok[:, None] & k_ok[None, :],
            other=0.0,
        )
        w_ok = k_ok[:, None] & unit_ok[None, :]
        w_z = tl.load(w_base + j[None, :] * hidden + k[:, None], mask=w_ok, other=0.0)
        w_c = tl.load(w_base + (hidden + j[None, :]) * hidden + k[:, None], mask=w_ok, other=0.0)
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
        c *= tl.load(drop + (d * rows + b[:, None]) * hidden + j[None, :], mask=ok, other=0.0)
    h_prev = tl.load(h_prev_base + b[:, None] * hidden + j[None, :], mask=ok, other=0.0)
    h_new = c + z * (h_prev - c)
    if HAS_LENGTHS:
        length = tl.load(lengths + b, mask=row_ok, other=0)
        h_new = tl.where((t < length)[:, None], h_new, h_prev)
    tl.store(h_prev_base + rows * hidden + b[:, None] * hidden + j[None, :], h_new, mask=ok)


@triton.jit
def _product_rows(
    source,  # [D, B, K] at source + d * source_stride
    weight,  # [D, N, K] (TRANSPOSED: [D, K, N])
    out,  # [D, B, N]
    source_stride,
    rows,
    n_size,
    k_size,
    TRANSPOSED: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    BB: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
):
    """``out[d] = source[d] @ weight[d]^T`` (``@ weight[d]`` when ``TRANSPOSED``)."""
    d = tl.program_id(0)
    b = tl.program_id(1) * BB + tl.arange(0, BB)
    n = tl.program_id(2) * BN + tl.arange(0, BN)
    row_ok = b < rows
    n_ok = n < n_size
    w_base = weight + d * n_size * k_size
    acc = tl.zeros((BB, BN), dtype=tl.float32)
    for k0 in range(0, k_size, BK):
        k = k0 + tl.arange(0, BK)
        k_ok = k < k_size
        x = tl.load(
            source + d * source_stride + b[:, None] * k_size + k[None, :],
            mask=row_ok[:, None] & k_ok[None, :],
            other=0.0,
        )
        if TRANSPOSED:
            w_ptr = w_base + k[:, None] * n_size + n[None, :]
        else:
            w_ptr = w_base + n[None, :] * k_size + k[:, None]
        w = tl.load(w_ptr, mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        acc += _dot(x, w, PRECISION, DOT_DTYPE)
    ok = row_ok[:, None] & n_ok[None, :]
    tl.store(out + (d * rows + b[:, None]) * n_size + n[None, :], acc, mask=ok)


@triton.jit
def _forward_step_normed(
    gates,  # [D, T, B, 2H]
    states,  # [D, T + 1, B, H]
    u,  # [D, B, 2H]: U h_{t-1} of this step
    lengths,
    drop,
    t,
    rows,
    hidden,
    steps,
    eps,
    HAS_LENGTHS: tl.constexpr,
    HAS_DROP: tl.constexpr,
    NONLINEARITY: tl.constexpr,
    SLOPE: tl.constexpr,
    BH: tl.constexpr,
):
    """One row of an SLi-GRU step: ``LN(u)``, the gates and the new state."""
    d = tl.program_id(0)
    b = tl.program_id(1)
    j = tl.arange(0, BH)
    unit_ok = j < hidden
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
        c *= tl.load(drop + (d * rows + b) * hidden + j, mask=unit_ok, other=0.0)
    h_base = states + ((d * (steps + 1) + t) * rows + b) * hidden
    h_prev = tl.load(h_base + j, mask=unit_ok, other=0.0)
    h_new = c + z * (h_prev - c)
    if HAS_LENGTHS:
        h_new = tl.where(t < tl.load(lengths + b), h_new, h_prev)
    tl.store(h_base + rows * hidden + j, h_new, mask=unit_ok)


@triton.jit
def _backward_step_rows(
    grad_gates,  # [D, T, B, 2H]: the coefficients on entry, dgates on exit (step t)
    dh,  # [D, B, H]
    u,  # [D, T, B, 2H] (NORMED): U h_{t-1} on entry, the layer norm's input gradient on exit
    mean,  # [D, T, B] (NORMED)
    rstd,  # [D, T, B] (NORMED)
    t,
    rows,
    hidden,
    steps,
    NORMED: tl.constexpr,
    BH: tl.constexpr,
):
    """One row of a backward step: ``dgates_t = coef_t * [dh_t, dh_t]`` (SLi-GRU: and ``du``)."""
    d = tl.program_id(0)
    b = tl.program_id(1)
    j = tl.arange(0, BH)
    unit_ok = j < hidden
    g_base = grad_gates + ((d * steps + t) * rows + b) * 2 * hidden
    grad = tl.load(dh + (d * rows + b) * hidden + j, mask=unit_ok, other=0.0)
    dg_z = tl.load(g_base + j, mask=unit_ok, other=0.0) * grad
    dg_c = tl.load(g_base + hidden + j, mask=unit_ok, other=0.0) * grad
    tl.store(g_base + j, dg_z, mask=unit_ok)
    tl.store(g_base + hidden + j, dg_c, mask=unit_ok)
    if NORMED:
        stat = (d * steps + t) * rows + b
        mu = tl.load(mean + stat)
        r = tl.load(rstd + stat)
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
    source,  # [D, T, B, 2H]: dgates (or du) of step t
    weight,  # [D, 2H, H]
    dh,  # [D, B, H]: dh_t
    zeta,  # [D, C, B, H]: the chunk's direct-path factors, step t at index t - start
    grad_out,  # [D, T, B, H]
    dh_prev,  # [D, B, H]: written
    t,
    start,
    chunk,
    rows,
    hidden,
    steps,
    PRECISION: tl.constexpr,
    DOT_DTYPE: tl.constexpr,
    BB: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
):
    """``dh_{t-1} = dh_t * zeta_t + source_t U + grad_out_{t-1}`` (no output term at t = 0)."""
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
        k = k0 + tl.arange(0, BK)
        k_ok = k < 2 * hidden
        x = tl.load(
            s_base + b[:, None] * 2 * hidden + k[None, :],
            mask=row_ok[:, None] & k_ok[None, :],
            other=0.0,
        )
        w_ok = k_ok[:, None] & n_ok[None, :]
        w = tl.load(w_base + k[:, None] * hidden + n[None, :], mask=w_ok, other=0.0)
        acc += _dot(x, w, PRECISION, DOT_DTYPE)
    unit = (d * rows + b[:, None]) * hidden + n[None, :]
    factor = tl.load(
        zeta + ((d * chunk + t - start) * rows + b[:, None]) * hidden + n[None, :],
        mask=ok,
        other=0.0,
    )
    acc += tl.load(dh + unit, mask=ok, other=0.0) * factor
    if t > 0:
        acc += tl.load(
            grad_out + ((d * steps + t - 1) * rows + b[:, None]) * hidden + n[None, :],
            mask=ok,
            other=0.0,
        )
    tl.store(dh_prev + unit, acc, mask=ok)


def _row_block(rows: int) -> int:
    return max(ROW_BLOCK, min(64, triton.next_power_of_2(rows)))


def _precision(tf32: bool) -> str:
    return "tf32" if tf32 else "ieee"


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
    flags = dict(
        HAS_LENGTHS=lengths is not None,
        HAS_DROP=drop_mask is not None,
        NONLINEARITY=NONLINEARITIES.index(nonlinearity),
        SLOPE=LEAKY_RELU_SLOPE,
    )
    dot = dict(PRECISION=_precision(tf32), DOT_DTYPE=_TL_DTYPES[product_dtype])
    length_arg = lengths if lengths is not None else states
    drop_arg = drop_mask if drop_mask is not None else states
    bb = _row_block(rows)
    row_blocks = triton.cdiv(rows, bb)
    if not recurrent_norm:
        grid = (directions, row_blocks, triton.cdiv(hidden, UNIT_BLOCK))
        for t in range(steps):
            _forward_step_fused[grid](
                gates, states, weight_hh, length_arg, drop_arg, t, rows, hidden, steps,
                **flags, **dot, BB=bb, BJ=UNIT_BLOCK, BK=K_BLOCK,
            )  # fmt: skip
        return
    u = states.new_empty(directions, rows, two_hidden)
    product_grid = (directions, row_blocks, triton.cdiv(two_hidden, UNIT_BLOCK))
    row_grid = (directions, rows)
    block_hidden = triton.next_power_of_2(hidden)
    for t in range(steps):
        _product_rows[product_grid](
            states[:, t], weight_hh, u, (steps + 1) * rows * hidden, rows, two_hidden, hidden,
            TRANSPOSED=False, **dot, BB=bb, BN=UNIT_BLOCK, BK=K_BLOCK,
        )  # fmt: skip
        _forward_step_normed[row_grid](
            gates, states, u, length_arg, drop_arg, t, rows, hidden, steps, LAYER_NORM_EPS,
            **flags, BH=block_hidden,
        )  # fmt: skip


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
    ``dh_{start-1}`` (at ``start = 0``: the gradient of ``h0``).

    ``grad_gates [D, T, B, 2H]`` holds the coefficients of the chunk's steps on entry and their
    ``dgates`` on exit; ``zeta [D, C, B, H]`` the chunk's factors; ``grad_out [D, T, B, H]``
    (zero on padded frames); ``dh [D, B, H]`` the gradient of ``h_{end-1}``. SLi-GRU passes
    ``u [D, T, B, 2H]`` (overwritten with the layer norm's input gradient) and its per-row
    ``mean``, ``rstd`` ``[D, T, B]``.
    """
    directions, steps, rows, two_hidden = grad_gates.shape
    hidden = two_hidden // 2
    normed = u is not None
    dot = dict(PRECISION=_precision(tf32), DOT_DTYPE=_TL_DTYPES[product_dtype])
    placeholder = grad_gates
    bb = _row_block(rows)
    product_grid = (directions, triton.cdiv(rows, bb), triton.cdiv(hidden, UNIT_BLOCK))
    row_grid = (directions, rows)
    block_hidden = triton.next_power_of_2(hidden)
    chunk = zeta.stride(0) // (rows * hidden)  # zeta may be the first steps of a larger buffer
    spare = torch.empty_like(dh)
    for t in range(end - 1, start - 1, -1):
        _backward_step_rows[row_grid](
            grad_gates, dh, u if normed else placeholder, mean if normed else placeholder,
            rstd if normed else placeholder, t, rows, hidden, steps, NORMED=normed, BH=block_hidden,
        )  # fmt: skip
        _backward_step_product[product_grid](
            u if normed else grad_gates, weight_hh, dh, zeta, grad_out, spare, t, start, chunk,
            rows, hidden, steps, **dot, BB=bb, BN=UNIT_BLOCK, BK=K_BLOCK,
        )  # fmt: skip
        dh, spare = spare, dh
    return dh
