r"""The Light GRU recurrence: the one loop over time shared by LiGRU and SLi-GRU.

Given the normalised input projection ``a = [a_z, a_h]`` of every frame (computed before the loop as
one large product), the recurrence is

.. math::
    u_t = U h_{t-1} \quad (\text{SLi-GRU: } u_t = \mathrm{LN}(U h_{t-1}))

    z_t = \sigma(a_{z,t} + u_{z,t}), \quad c_t = f(a_{h,t} + u_{h,t}) \odot m

    h_t = z_t \odot h_{t-1} + (1 - z_t) \odot c_t

where ``m`` is the recurrent dropout mask of the sequence (the same at every step) and ``f`` the
candidate nonlinearity. On padded frames (``mask`` False) the state is held and the output is zero.

This module is the single place the loop lives, so a faster kernel can replace
:func:`ligru_recurrence` without touching the layers.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnlib.ligru.cpu_kernel import ligru_fast
from rnnlib.ligru.layout import output_from_states
from rnnlib.ligru.masked_norm import normalise_frames
from rnnlib.ligru.pointwise import (
    LAYER_NORM_EPS,
    LEAKY_RELU_SLOPE,
    NONLINEARITIES,
    candidate_activation,
)

__all__ = [
    "LAYER_NORM_EPS",
    "LEAKY_RELU_SLOPE",
    "NONLINEARITIES",
    "candidate_activation",
    "ligru_recurrence",
    "ligru_recurrence_directions",
    "ligru_recurrence_reference",
]


def ligru_recurrence_reference(
    a: Tensor,
    weight_hh: Tensor,
    h0: Tensor,
    mask: Tensor | None = None,
    nonlinearity: str = "relu",
    recurrent_norm: bool = False,
    drop_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Run the Light GRU recurrence step by step with autograd (the readable reference).

    Args:
        a: normalised input projections ``[batch, time, 2 * hidden]`` (``a_z`` then ``a_h``).
        weight_hh: recurrent weight ``U`` ``[2 * hidden, hidden]``.
        h0: initial state ``[batch, hidden]``.
        mask: ``[batch, time]`` bool, True on valid frames; None if all are valid.
        nonlinearity: candidate nonlinearity.
        recurrent_norm: layer-normalise ``U h`` (no affine) before the gates (SLi-GRU).
        drop_mask: recurrent dropout mask ``[batch, hidden]`` (already scaled), or None.

    Returns:
        ``(output [batch, time, hidden], h_n [batch, hidden])``.

    >>> out, h = ligru_recurrence_reference(torch.zeros(2, 3, 8), torch.eye(8, 4), torch.ones(2, 4))
    >>> out.shape, h.shape
    (torch.Size([2, 3, 4]), torch.Size([2, 4]))
    """
    hidden = weight_hh.shape[1]
    h = h0
    outputs = []
    for t in range(a.shape[1]):
        u = F.linear(h, weight_hh)
        if recurrent_norm:
            u = F.layer_norm(u, (2 * hidden,), eps=LAYER_NORM_EPS)
        gates = a[:, t] + u
        z = torch.sigmoid(gates[:, :hidden])
        c = candidate_activation(gates[:, hidden:], nonlinearity)
        if drop_mask is not None:
            c = c * drop_mask
        h_new = z * h + (1 - z) * c
        if mask is not None:
            valid = mask[:, t : t + 1]
            h_new = torch.where(valid, h_new, h)
            outputs.append(h_new * valid)
        else:
            outputs.append(h_new)
        h = h_new
    return torch.stack(outputs, dim=1), h


def ligru_recurrence(
    a: Tensor,
    weight_hh: Tensor,
    h0: Tensor,
    mask: Tensor | None = None,
    nonlinearity: str = "relu",
    recurrent_norm: bool = False,
    drop_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Run the Light GRU recurrence; same contract as :func:`ligru_recurrence_reference`.

    This is the entry the layers call; it dispatches to the fast kernel
    (:func:`rnnlib.ligru.cpu_kernel.ligru_fast`).

    >>> a = torch.randn(2, 5, 8)
    >>> out, h = ligru_recurrence(a, torch.randn(8, 4) / 2, torch.zeros(2, 4))
    >>> torch.allclose(out[:, -1], h)
    True
    """
    out, h_n = ligru_recurrence_directions(
        [a],
        [weight_hh],
        h0.unsqueeze(0),
        mask,
        nonlinearity,
        recurrent_norm,
        None if drop_mask is None else drop_mask.unsqueeze(0),
    )
    return out[0], h_n[0]


def ligru_recurrence_directions(
    inputs: Sequence[Tensor],
    weights_hh: Sequence[Tensor],
    h0: Tensor,
    mask: Tensor | None = None,
    nonlinearity: str = "relu",
    recurrent_norm: bool = False,
    drop_mask: Tensor | None = None,
    reference: bool = False,
    scales: Sequence[Tensor] | None = None,
    shifts: Sequence[Tensor] | None = None,
    layout: str = "stacked",
    batch_norm_eps: float | None = None,
) -> tuple[Tensor, ...]:
    """Run ``D`` independent recurrences (e.g. the two directions of a layer) together.

    Args:
        inputs: ``D`` input projections ``[batch, time, 2 * hidden]``, all padded like ``mask``:
            ``a``, or ``x_hat`` with ``a = scale * x_hat + shift`` when ``scales`` are given, or
            ``W x`` itself with ``batch_norm_eps`` (``x_hat`` is then computed here).
        weights_hh: ``D`` recurrent weights ``[2 * hidden, hidden]``.
        h0: initial states ``[D, batch, hidden]``.
        mask, nonlinearity, recurrent_norm: as in :func:`ligru_recurrence_reference`.
        drop_mask: recurrent dropout masks ``[D, batch, hidden]`` or None.
        reference: run :func:`ligru_recurrence_reference` per direction instead of the kernel.
        scales, shifts: ``D`` tensors ``[2 * hidden]`` (a fused batch-norm affine), or None.
        layout: the output's arrangement, see :mod:`rnnlib.ligru.layout`.
        batch_norm_eps: normalise the inputs with batch statistics over the valid frames (a
            training batch norm whose affine is ``scales``, ``shifts``).

    Returns:
        ``(output, h_n [D, batch, hidden])``; ``output`` is ``[D, batch, time, hidden]`` for the
        default ``stacked`` layout. With ``batch_norm_eps`` also the batch ``mean`` and biased
        ``var`` ``[D, 2 * hidden]`` of the inputs.

    >>> out, h = ligru_recurrence_directions(
    ...     [torch.randn(2, 5, 8)] * 2, [torch.randn(8, 4)] * 2, torch.zeros(2, 2, 4))
    >>> out.shape, h.shape
    (torch.Size([2, 2, 5, 4]), torch.Size([2, 2, 4]))
    """
    if reference or (drop_mask is not None and drop_mask.requires_grad):
        statistics = ()
        if batch_norm_eps is not None:
            normalised = [normalise_frames(x, mask, batch_norm_eps) for x in inputs]
            inputs = [x_hat for x_hat, _, _ in normalised]
            statistics = tuple(torch.stack(s) for s in list(zip(*normalised, strict=True))[1:])
        if scales is not None:
            affine = zip(inputs, scales, shifts, strict=True)
            inputs = [torch.addcmul(shift, x, scale) for x, scale, shift in affine]
        results = [
            ligru_recurrence_reference(
                a,
                w,
                h0[d],
                mask,
                nonlinearity,
                recurrent_norm,
                None if drop_mask is None else drop_mask[d],
            )
            for d, (a, w) in enumerate(zip(inputs, weights_hh, strict=True))
        ]
        states = torch.stack([r[0] for r in results]).transpose(1, 2)  # [D, T, B, H]
        output = output_from_states(states, mask, layout)
        return output, torch.stack([r[1] for r in results]), *statistics
    weight = _stack(weights_hh)
    scale = None if scales is None else _stack(scales)
    shift = None if shifts is None else _stack(shifts)
    return ligru_fast(
        inputs,
        weight,
        h0,
        mask,
        nonlinearity,
        recurrent_norm,
        drop_mask,
        scale,
        shift,
        layout,
        batch_norm_eps,
    )


def _stack(tensors: Sequence[Tensor]) -> Tensor:
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(list(tensors))
