r"""Fast Light GRU recurrence: a custom autograd Function with one recurrent product per step.

Everything that can be batched over time runs outside the loops; inside them there is only the
product ``U h`` (forward) or ``dgates U`` (backward) plus a few in-place element-wise operations on
preallocated time-major buffers. Several directions with separate weights run in the same loop as
a batched product (``baddbmm`` with ``U`` stacked ``[D, 2H, H]``).

Saved for backward: the states ``h_0..h_T`` and the gate pre-activations ``a + U h`` (SLi-GRU:
``a + LN(U h)``); the backward recomputes the rest (SLi-GRU: ``U h`` for every step as one large
product, then the layer-norm statistics). The weight gradient is one large product after the loop,
``dU = sum_t dgates_t^T h_{t-1}``, and the gradient of ``a`` is ``dgates`` itself.
"""

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnlib.ligru_pointwise import (
    LAYER_NORM_EPS,
    candidate_activation,
    candidate_activation_into,
    candidate_derivative,
)
from rnnlib.ligru_product import RecurrentProduct

CHUNK_STEPS = 64  # backward coefficients are computed this many steps at a time (bounded memory)


def ligru_fast(
    inputs: Sequence[Tensor],
    weight_hh: Tensor,
    h0: Tensor,
    mask: Tensor | None,
    nonlinearity: str,
    recurrent_norm: bool,
    drop_mask: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Run ``D`` directions of the Light GRU recurrence in one loop.

    Args:
        inputs: ``D`` input projections ``[batch, time, 2 * hidden]``.
        weight_hh: recurrent weights stacked ``[D, 2 * hidden, hidden]``.
        h0: initial states ``[D, batch, hidden]``.
        mask: ``[batch, time]`` bool (True on valid frames, shared by every direction) or None.
        nonlinearity: candidate nonlinearity.
        recurrent_norm: layer-normalise ``U h`` before the gates (SLi-GRU).
        drop_mask: recurrent dropout masks ``[D, batch, hidden]`` or None (no gradient).

    Returns:
        ``(output [D, batch, time, hidden], h_n [D, batch, hidden])``.

    Under autocast the recurrence runs in the autocast dtype (inputs are cast to it).

    >>> out, h = ligru_fast([torch.randn(2, 5, 8)], torch.randn(1, 8, 4), torch.zeros(1, 2, 4),
    ...                     None, "relu", False, None)
    >>> out.shape, torch.equal(out[:, :, -1], h)
    (torch.Size([1, 2, 5, 4]), True)
    """
    device_type = h0.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
    else:
        dtype = inputs[0].dtype
    inputs = [a.to(dtype) for a in inputs]
    weight_hh, h0 = weight_hh.to(dtype), h0.to(dtype)
    if drop_mask is not None:
        drop_mask = drop_mask.to(dtype)
    tensors = (weight_hh, h0, *inputs)
    keep = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    with torch.autocast(device_type, enabled=False):
        return _LiGRUFunction.apply(
            weight_hh, h0, mask, drop_mask, nonlinearity, recurrent_norm, keep, *inputs
        )


class _LiGRUFunction(torch.autograd.Function):
    """Autograd glue around :func:`_forward_loop` and :func:`_backward_loop`."""

    @staticmethod
    def forward(ctx, weight_hh, h0, mask, drop_mask, nonlinearity, recurrent_norm, keep, *inputs):
        directions, batch, hidden = h0.shape
        time = inputs[0].shape[1]
        gates = h0.new_empty(directions, time, batch, 2 * hidden)
        for d, a in enumerate(inputs):
            gates[d].copy_(a.transpose(0, 1))
        states = h0.new_empty(directions, time + 1, batch, hidden)
        states[:, 0].copy_(h0)
        valid = None if mask is None else mask.t().unsqueeze(-1).to(h0.device)
        _forward_loop(gates, states, weight_hh, valid, drop_mask, nonlinearity, recurrent_norm)
        out = states[:, 1:]
        if valid is not None:
            out = out * valid
        if keep:
            ctx.save_for_backward(gates, states, weight_hh, valid, drop_mask)
            ctx.options = (nonlinearity, recurrent_norm)
        return out.transpose(1, 2), states[:, time].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_h_n):
        gates, states, weight_hh, valid, drop_mask = ctx.saved_tensors
        with torch.autocast(gates.device.type, enabled=False):
            grads = _backward_loop(
                gates, states, weight_hh, valid, drop_mask, *ctx.options, grad_out, grad_h_n
            )
        grad_weight, grad_h0, grad_gates = grads
        grad_inputs = [grad_gates[d].transpose(0, 1) for d in range(grad_gates.shape[0])]
        return grad_weight, grad_h0, None, None, None, None, None, *grad_inputs


def _forward_loop(
    gates: Tensor,
    states: Tensor,
    weight_hh: Tensor,
    valid: Tensor | None,
    drop_mask: Tensor | None,
    nonlinearity: str,
    recurrent_norm: bool,
) -> None:
    """Fill ``states[:, 1:]`` and turn ``gates`` (holding ``a``) into the gate pre-activations.

    ``gates [D, T, B, 2H]``, ``states [D, T + 1, B, H]`` (``states[:, 0]`` = ``h0``), ``valid
    [T, B, 1]`` bool or None.
    """
    hidden = states.shape[-1]
    product = RecurrentProduct(weight_hh, rows=states.shape[2])
    gate_steps = gates.unbind(1)
    z_steps = gates[..., :hidden].unbind(1)
    c_steps = gates[..., hidden:].unbind(1)
    state_steps = states.unbind(1)
    z = states.new_empty(states[:, 0].shape)
    c = torch.empty_like(z)
    new = torch.empty_like(z) if valid is not None else None
    norm_shape = (2 * hidden,)
    for t, g in enumerate(gate_steps):
        h_prev, h_next = state_steps[t], state_steps[t + 1]
        if recurrent_norm:
            u = product(h_prev)
            g.add_(torch.native_layer_norm(u, norm_shape, None, None, LAYER_NORM_EPS)[0])
        else:
            product.add_into(g, h_prev)
        torch.sigmoid(z_steps[t], out=z)
        candidate_activation_into(c_steps[t], nonlinearity, c)
        if drop_mask is not None:
            c.mul_(drop_mask)
        if valid is None:
            torch.lerp(c, h_prev, z, out=h_next)
        else:
            torch.lerp(c, h_prev, z, out=new)
            torch.where(valid[t], new, h_prev, out=h_next)


def _backward_loop(
    gates: Tensor,
    states: Tensor,
    weight_hh: Tensor,
    valid: Tensor | None,
    drop_mask: Tensor | None,
    nonlinearity: str,
    recurrent_norm: bool,
    grad_out: Tensor,
    grad_h_n: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``(dU [D, 2H, H], dh0 [D, B, H], dgates [D, T, B, 2H])`` (``dgates`` = ``da``).

    Per step only ``dgates_t = coef_t * dh_t`` and ``dh_{t-1} = dh_t * zeta_t + dgates_t U (+ the
    output's gradient)``, where ``coef`` and ``zeta`` depend on the forward alone and are computed
    a chunk of steps at a time. SLi-GRU adds the layer-norm backward per step.
    """
    directions, time, batch, two_hidden = gates.shape
    hidden = two_hidden // 2
    grad_out = grad_out.transpose(1, 2)  # [D, T, B, H]
    if valid is not None:
        grad_out = grad_out * valid
    grad_gates = torch.empty_like(gates)
    prev_states = states[:, :time].reshape(directions, time * batch, hidden)
    if recurrent_norm:  # recompute U h of every step as one product, and its statistics
        u = torch.bmm(prev_states, weight_hh.transpose(1, 2))
        _, mean, rstd = torch.native_layer_norm(u, (two_hidden,), None, None, LAYER_NORM_EPS)
        u_steps = u.view(directions, time, batch, two_hidden).unbind(1)
        # native_layer_norm_backward reads mean and rstd as contiguous: make each step so.
        mean_steps = mean.view(directions, time, batch, 1).transpose(0, 1).contiguous().unbind(0)
        rstd_steps = rstd.view(directions, time, batch, 1).transpose(0, 1).contiguous().unbind(0)
    product = RecurrentProduct(weight_hh.transpose(1, 2), rows=batch)  # dgates -> dgates U
    out_steps = grad_out.unbind(1)
    grad_steps = grad_gates.unbind(1)
    zeta = states.new_empty(directions, min(CHUNK_STEPS, time), batch, hidden)
    dh = grad_h_n + out_steps[time - 1]
    spare = torch.empty_like(dh)
    for end in range(time, 0, -CHUNK_STEPS):
        start = max(0, end - CHUNK_STEPS)
        zeta_chunk = zeta[:, : end - start]
        _coefficients(
            gates[:, start:end],
            states[:, start:end],
            grad_gates[:, start:end],
            zeta_chunk,
            None if valid is None else valid[start:end],
            drop_mask,
            nonlinearity,
        )
        zeta_steps = zeta_chunk.unbind(1)
        for t in range(end - 1, start - 1, -1):
            dg = grad_steps[t]
            dg.view(directions, batch, 2, hidden).mul_(dh.unsqueeze(2))
            if recurrent_norm:
                du = torch.ops.aten.native_layer_norm_backward(
                    dg,
                    u_steps[t],
                    (two_hidden,),
                    mean_steps[t],
                    rstd_steps[t],
                    None,
                    None,
                    (True, False, False),
                )[0]
                u_steps[t].copy_(du)  # u of step t is no longer needed: keep du there
                dg = du
            if t > 0:
                torch.addcmul(out_steps[t - 1], dh, zeta_steps[t - start], out=spare)
            else:
                torch.mul(dh, zeta_steps[0], out=spare)
            product.add_into(spare, dg)
            dh, spare = spare, dh
    grad_u = u if recurrent_norm else grad_gates.view(directions, time * batch, two_hidden)
    grad_weight = torch.bmm(grad_u.transpose(1, 2), prev_states)
    return grad_weight, dh, grad_gates


def _coefficients(
    gates: Tensor,
    prev_states: Tensor,
    coef: Tensor,
    zeta: Tensor,
    valid: Tensor | None,
    drop_mask: Tensor | None,
    nonlinearity: str,
) -> None:
    """For a chunk of steps write ``d gates / d h_t`` into ``coef`` and ``d h_t / d h_{t-1}``
    (the direct path through ``z``) into ``zeta``.

    ``coef_z = sigma'(.) (h_{t-1} - c)``, ``coef_c = (1 - z) f'(.) m``, ``zeta = z``; on padded
    frames the state is held: ``coef = 0`` and ``zeta = 1``.
    """
    hidden = prev_states.shape[-1]
    pre_c = gates[..., hidden:]
    torch.sigmoid(gates[..., :hidden], out=zeta)
    c = candidate_activation(pre_c, nonlinearity)
    slope = candidate_derivative(pre_c, c, nonlinearity)
    if drop_mask is not None:
        m = drop_mask.unsqueeze(1)
        c.mul_(m)
        slope.mul_(m)
    coef_z, coef_c = coef[..., :hidden], coef[..., hidden:]
    torch.sub(prev_states, c, out=coef_z)
    one_minus_z = 1 - zeta
    coef_z.mul_(zeta).mul_(one_minus_z)
    torch.mul(one_minus_z, slope, out=coef_c)
    if valid is not None:
        coef.mul_(valid)
        zeta.masked_fill_(~valid, 1.0)
