r"""Fast Light GRU recurrence: a custom autograd Function with one recurrent product per step.

Everything that can be batched over time runs outside the loops; inside them there is only the
product ``U h`` (forward) or ``dgates U`` (backward) plus a few in-place element-wise operations on
preallocated time-major buffers. Directions with separate weights run as one loop with a batched
product (``U`` stacked ``[D, 2H, H]``), or on CPU as concurrent loops, one per core
(:mod:`rnnlib.ligru.parallel_directions`).

The input of each direction is either ``a`` itself or ``x_hat`` with a per-feature ``scale`` and
``shift`` (``a = scale * x_hat + shift``: the affine step of a batch norm, fused here so that only
``x_hat`` is ever stored). Saved for backward: the inputs, the small weights and the output, in the
layer's own layout (:mod:`rnnlib.ligru.layout`), which the next layer saves anyway; for a ReLU or
leaky ReLU candidate without layer norm also the sign of the candidate's pre-activation (one bool
per unit). The backward rebuilds the states from the output, the gate pre-activations from
``a + U h`` (one large product for all steps, SLi-GRU: ``a + LN(U h)``; with the sign, only the
update gate's half), and overwrites them with the gates' gradient. The weight gradient is one
large product after the loop, ``dU = sum_t dgates_t^T h_{t-1}``.
"""

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnlib.ligru import cpp_loops
from rnnlib.ligru import loop_route as loops
from rnnlib.ligru.layout import check_layout, output_from_states, states_from_output
from rnnlib.ligru.masked_norm import frame_count, frame_statistics, normalise_backward, valid_frames
from rnnlib.ligru.parallel_directions import run_directions
from rnnlib.ligru.pointwise import (
    LAYER_NORM_EPS,
    candidate_activation_into,
    gate_coefficients,
    gate_coefficients_from_sign,
)
from rnnlib.ligru.products import RecurrentProduct, product_into
from rnnlib.torch_internals import layer_norm_input_grad, native_layer_norm

CHUNK_STEPS = 64  # backward coefficients are computed this many steps at a time (bounded memory)


@torch.compiler.disable  # a loop over time steps: torch.compile would unroll it (minutes per shape)
def ligru_fast(
    inputs: Sequence[Tensor],
    weight_hh: Tensor,
    h0: Tensor,
    mask: Tensor | None,
    nonlinearity: str,
    recurrent_norm: bool,
    drop_mask: Tensor | None,
    scale: Tensor | None = None,
    shift: Tensor | None = None,
    layout: str = "stacked",
    batch_norm_eps: float | None = None,
) -> tuple[Tensor, ...]:
    """Run ``D`` directions of the Light GRU recurrence in one loop.

    Args:
        inputs: ``D`` input projections ``[rows, time, 2 * hidden]``: ``a``, or ``x_hat`` when
            ``scale`` and ``shift`` are given, or ``W x`` itself with ``batch_norm_eps``.
        weight_hh: recurrent weights stacked ``[D, 2 * hidden, hidden]``.
        h0: initial states ``[D, rows, hidden]``.
        mask: ``[rows, time]`` bool from lengths (True on a prefix of valid frames, shared by every
            direction) or None.
        nonlinearity: candidate nonlinearity.
        recurrent_norm: layer-normalise ``U h`` before the gates (SLi-GRU).
        drop_mask: recurrent dropout masks ``[D, rows, hidden]`` or None (no gradient).
        scale, shift: ``[D, 2 * hidden]``, ``a = scale * x_hat + shift``; or both None.
        layout: how the output is arranged (:data:`rnnlib.ligru.layout.LAYOUTS`).
        batch_norm_eps: normalise each input here with its batch statistics over the valid
            frames (a training batch norm, ``scale`` and ``shift`` its affine), so that the
            backward goes through the normalisation in the same passes over the frames as the
            affine's own gradients.

    Returns:
        ``(output, h_n [D, rows, hidden])``; ``output`` is ``[D, rows, time, hidden]`` when
        ``layout`` is ``stacked``. With ``batch_norm_eps`` also the batch ``mean`` and biased
        ``var`` ``[D, 2 * hidden]`` (no gradient), for the running estimates.

    Under autocast (bfloat16 on CPU, float16 or bfloat16 on CUDA) only the matrix products run
    in the autocast dtype, each accumulating in float32; the states, the gates, their sums and
    the output stay float32 (``scripts/bench_rnn.py --bf16`` states the agreement with float32).

    >>> out, h = ligru_fast([torch.randn(2, 5, 8)], torch.randn(1, 8, 4), torch.zeros(1, 2, 4),
    ...                     None, "relu", False, None)
    >>> out.shape, torch.equal(out[:, :, -1], h)
    (torch.Size([1, 2, 5, 4]), True)
    """
    check_layout(layout, len(inputs))
    if (scale is None) != (shift is None):
        raise ValueError("give both scale and shift, or neither")
    if batch_norm_eps is not None and scale is None:
        raise ValueError("batch_norm_eps needs the batch norm's scale and shift")
    device_type = h0.device.type
    dtype, product_dtype = inputs[0].dtype, None
    if torch.is_autocast_enabled(device_type):
        dtype, product_dtype = torch.float32, torch.get_autocast_dtype(device_type)
    inputs = [a.to(dtype) for a in inputs]
    weight_hh, h0 = weight_hh.to(dtype), h0.to(dtype)
    if drop_mask is not None:
        drop_mask = drop_mask.to(dtype)
    if scale is not None:
        scale, shift = scale.to(dtype), shift.to(dtype)
    tensors = (weight_hh, h0, scale, shift, *inputs)
    keep = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    options = (nonlinearity, recurrent_norm, layout, keep, batch_norm_eps, product_dtype)
    with torch.autocast(device_type, enabled=False):
        results = _LiGRUFunction.apply(
            weight_hh, h0, scale, shift, mask, drop_mask, options, *inputs
        )
    return results if batch_norm_eps is not None else results[:2]


def _fill_inputs(gates: Tensor, inputs: Sequence[Tensor], scale, shift, accumulate: bool) -> None:
    """Write (or add) ``a`` of every direction time-major into ``gates [D, T, B, 2H]``."""
    for d, x in enumerate(inputs):
        a = x.transpose(0, 1)
        if scale is None and accumulate:
            gates[d].add_(a)
        elif scale is None:
            gates[d].copy_(a)
        elif accumulate:
            gates[d].addcmul_(a, scale[d]).add_(shift[d])
        else:
            torch.addcmul(shift[d], a, scale[d], out=gates[d])


def _sign_suffices(nonlinearity: str, recurrent_norm: bool) -> bool:
    """Whether the backward needs only the sign of the candidate's pre-activation (stored as a
    bool in the forward) instead of recomputing it: a piecewise-linear ``f``, no layer norm."""
    return nonlinearity in ("relu", "leaky_relu") and not recurrent_norm


def _part(tensor: Tensor | None, part: slice) -> Tensor | None:
    """The directions ``part`` of a ``[D, ...]`` tensor, or None."""
    return None if tensor is None else tensor[part]


def _lengths(mask: Tensor | None) -> Tensor | None:
    """Valid frames per row ``[rows]`` int32 of a prefix ``mask [rows, time]``, or None."""
    return None if mask is None else mask.sum(1, dtype=torch.int32)


def _valid_steps(mask: Tensor | None) -> Tensor | None:
    """``mask [rows, time]`` as ``[time, rows, 1]``, the loops' per-step view."""
    return None if mask is None else mask.t().unsqueeze(-1)


class _LiGRUFunction(torch.autograd.Function):
    """Autograd glue around :func:`_forward_loop` and :func:`_backward_loop`."""

    @staticmethod
    def forward(ctx, weight_hh, h0, scale, shift, mask, drop_mask, options, *inputs):
        nonlinearity, recurrent_norm, layout, keep, batch_norm_eps, product_dtype = options
        directions, rows, hidden = h0.shape
        time = inputs[0].shape[1]
        mask = None if mask is None else mask.to(h0.device)
        mean = var = rstd = None
        if batch_norm_eps is not None:
            valid_per_frame = valid_frames(mask, h0.dtype)
            statistics = [frame_statistics(x, valid_per_frame, batch_norm_eps) for x in inputs]
            inputs = [x_hat for x_hat, *_ in statistics]
            mean, var, rstd = (torch.stack(s) for s in list(zip(*statistics, strict=True))[1:])
        gates = h0.new_empty(directions, time, rows, 2 * hidden)
        _fill_inputs(gates, inputs, scale, shift, accumulate=False)
        states = h0.new_empty(directions, time + 1, rows, hidden)
        states[:, 0].copy_(h0)
        valid = _valid_steps(mask)
        route = loops.loop_route(h0.device, h0.dtype)
        if route == "triton":
            loops.triton_steps().forward_loop(
                gates,
                states,
                weight_hh.contiguous(),
                _lengths(mask),
                None if drop_mask is None else drop_mask.contiguous(),
                nonlinearity,
                recurrent_norm,
                product_dtype,
                loops.TF32,
            )
        else:
            run_directions(
                lambda part, gates=gates: _forward_loop(
                    gates[part],
                    states[part],
                    weight_hh[part],
                    valid,
                    _part(drop_mask, part),
                    nonlinearity,
                    recurrent_norm,
                    product_dtype,
                    route,
                ),
                directions,
                h0.device,
            )
        positive = None
        if keep and _sign_suffices(nonlinearity, recurrent_norm):
            positive = gates[..., hidden:] > 0
        del gates
        h_n = states[:, time].clone()
        output = output_from_states(states[:, 1:], mask, layout)
        if keep:
            ctx.save_for_backward(
                weight_hh, h0, scale, shift, mask, drop_mask, positive, rstd, output, *inputs
            )
            ctx.options = options
            ctx.route = route
        if batch_norm_eps is None:
            return output, h_n
        ctx.mark_non_differentiable(mean, var)
        return output, h_n, mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out, grad_h_n, *_grad_statistics):
        saved = ctx.saved_tensors
        weight_hh, h0, scale, shift, mask, drop_mask, positive, rstd, output, *inputs = saved
        nonlinearity, recurrent_norm, layout, _, batch_norm_eps, product_dtype = ctx.options
        directions, rows, hidden = h0.shape
        time = inputs[0].shape[1]
        with torch.autocast(h0.device.type, enabled=False):
            states = h0.new_empty(directions, time + 1, rows, hidden)
            states[:, 0].copy_(h0)
            states_from_output(output, mask, layout, into=states[:, 1:])
            grad_steps = states_from_output(
                grad_out, mask, layout, into=torch.empty_like(states[:, 1:])
            )
            valid = _valid_steps(mask)

            def backward_part(
                part: slice, states: Tensor = states, grad_steps: Tensor = grad_steps
            ) -> tuple[Tensor, Tensor, Tensor]:
                return _backward_loop(
                    inputs[part],
                    _part(scale, part),
                    _part(shift, part),
                    states[part],
                    weight_hh[part],
                    valid,
                    _part(drop_mask, part),
                    nonlinearity,
                    recurrent_norm,
                    grad_steps[part],
                    grad_h_n[part],
                    _part(positive, part),
                    product_dtype,
                    ctx.route,
                )

            if ctx.route == "triton":  # one loop over every direction, on the device
                parts = [backward_part(slice(None))]
            else:
                parts = run_directions(backward_part, directions, h0.device)
            del backward_part, states, grad_steps  # freed before the inputs' gradients are made
            grad_weight = torch.cat([p[0] for p in parts])
            grad_h0 = torch.cat([p[1] for p in parts])
            grad_gates = [g for p in parts for g in p[2].unbind(0)]  # per direction [T, B, 2H]
            del parts
            grad_scale = grad_shift = None
            if batch_norm_eps is not None:  # through the affine and the batch statistics
                count = frame_count(inputs[0], mask)
                valid_per_frame = valid_frames(mask, h0.dtype)
                grads = []
                for d, x_hat in enumerate(inputs):  # written batch-major, as W's backward wants
                    g = grad_gates[d].transpose(0, 1)
                    grad_gates[d] = None  # each direction's buffer goes once it is read
                    grads.append(
                        normalise_backward(
                            g,
                            x_hat,
                            rstd[d],
                            valid_per_frame,
                            count,
                            scale[d],
                            torch.empty_like(x_hat),
                        )
                    )
                    del g
                grad_inputs = [g for g, _, _ in grads]
                grad_shift = torch.stack([g for _, g, _ in grads])
                grad_scale = torch.stack([g for _, _, g in grads])
            else:
                if scale is not None:
                    frames = (0, 1)
                    grad_shift = torch.stack([g.sum(frames) for g in grad_gates])
                    grad_scale = torch.stack(
                        [
                            (g * x.transpose(0, 1)).sum(frames)
                            for g, x in zip(grad_gates, inputs, strict=True)
                        ]
                    )
                    for g, s in zip(grad_gates, scale, strict=True):
                        g.mul_(s)
                grad_inputs = [g.transpose(0, 1) for g in grad_gates]
        return grad_weight, grad_h0, grad_scale, grad_shift, None, None, None, *grad_inputs


def _forward_loop(
    gates: Tensor,
    states: Tensor,
    weight_hh: Tensor,
    valid: Tensor | None,
    drop_mask: Tensor | None,
    nonlinearity: str,
    recurrent_norm: bool,
    product_dtype: torch.dtype | None = None,
    route: str = "torch",
) -> None:
    """Fill ``states[:, 1:]`` and turn ``gates`` (holding ``a``) into the gate pre-activations.

    ``gates [D, T, B, 2H]``, ``states [D, T + 1, B, H]`` (``states[:, 0]`` = ``h0``), ``valid
    [T, B, 1]`` bool or None. ``product_dtype``: the dtype of ``U h`` (None: the states' own).
    ``route``: ``torch`` runs the loop below, ``cpp`` the same loop in C++, bit for bit
    (:mod:`rnnlib.ligru.cpp_loops`).
    """
    hidden = states.shape[-1]
    product = RecurrentProduct(weight_hh, rows=states.shape[2], dtype=product_dtype)
    if route == "cpp":
        cpp_loops.extension().forward_loop(
            gates, states, _cpp_product(product), valid, drop_mask, nonlinearity, recurrent_norm
        )
        return
    gate_steps = gates.unbind(1)
    z_steps = gates[..., :hidden].unbind(1)
    c_steps = gates[..., hidden:].unbind(1)
    state_steps = states.unbind(1)
    z = states.new_empty(states[:, 0].shape)
    c = torch.empty_like(z)
    new = torch.empty_like(z) if valid is not None else None
    norm_shape = (2 * hidden,)
    u = states.new_empty(gates[:, 0].shape) if recurrent_norm else None  # the norm's input
    for t, g in enumerate(gate_steps):
        h_prev, h_next = state_steps[t], state_steps[t + 1]
        if recurrent_norm:
            product.into(u, h_prev)  # in the states' precision, for the norm
            g.add_(native_layer_norm(u, norm_shape, LAYER_NORM_EPS)[0])
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


def _cpp_product(product: RecurrentProduct):
    """``product``'s route and weights for the C++ loops, which mirror its branches."""
    packed = product.weights if product.use_onednn else []
    return cpp_loops.extension().Product(
        product.weight_t, packed, product.dtype, product.use_onednn, product.per_direction
    )


def _backward_loop(
    inputs: Sequence[Tensor],
    scale: Tensor | None,
    shift: Tensor | None,
    states: Tensor,
    weight_hh: Tensor,
    valid: Tensor | None,
    drop_mask: Tensor | None,
    nonlinearity: str,
    recurrent_norm: bool,
    grad_out: Tensor,
    grad_h_n: Tensor,
    positive: Tensor | None = None,
    product_dtype: torch.dtype | None = None,
    route: str = "torch",
) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``(dU [D, 2H, H], dh0 [D, B, H], dgates [D, T, B, 2H])`` (``dgates`` = ``da``).

    ``states [D, T + 1, B, H]`` (zero on padded frames), ``grad_out [D, T, B, H]`` (overwritten).
    First the gate pre-activations are rebuilt for all steps at once; then per step only
    ``dgates_t = coef_t * dh_t`` and ``dh_{t-1} = dh_t * zeta_t + dgates_t U (+ the output's
    gradient)``, where ``coef`` and ``zeta`` depend on the forward alone and are computed a chunk
    of steps at a time, in place of the pre-activations. SLi-GRU adds the layer-norm backward per
    step. With ``positive`` (``[D, T, B, H]``, the sign of the candidate's pre-activation, saved
    by the forward) only the update gate's half of ``U h`` is rebuilt. ``product_dtype``: the
    dtype of every matrix product (None: the states' own). ``route``: how each chunk's steps
    run (:mod:`rnnlib.ligru.loop_route`).
    """
    directions, steps_plus_one, batch, hidden = states.shape
    time, two_hidden = steps_plus_one - 1, 2 * hidden
    if valid is not None:
        grad_out.mul_(valid)
    prev_states = states[:, :time].reshape(directions, time * batch, hidden)
    u = prev_states.new_empty(directions, time * batch, two_hidden)
    rebuilt = hidden if positive is not None else two_hidden  # gate rows of U to rebuild
    low_states = prev_states if product_dtype is None else prev_states.to(product_dtype)
    low_weight = weight_hh if product_dtype is None else weight_hh.to(product_dtype)
    for d in range(directions):  # U h_{t-1} of every step; mm runs faster than bmm here
        product_into(u[d, :, :rebuilt], low_states[d], low_weight[d, :rebuilt])
    if recurrent_norm:  # keep u for the layer-norm backward, rebuild its statistics
        normed, mean, rstd = native_layer_norm(u, (two_hidden,), LAYER_NORM_EPS)
        gates = normed.view(directions, time, batch, two_hidden)
        u_steps = u.view(directions, time, batch, two_hidden).unbind(1)
        # native_layer_norm_backward reads mean and rstd as contiguous: make each step so.
        mean_by_step = mean.view(directions, time, batch, 1).transpose(0, 1).contiguous()
        rstd_by_step = rstd.view(directions, time, batch, 1).transpose(0, 1).contiguous()
        mean_steps, rstd_steps = mean_by_step.unbind(0), rstd_by_step.unbind(0)
    else:
        gates = u.view(directions, time, batch, two_hidden)
    if positive is None:
        _fill_inputs(gates, inputs, scale, shift, accumulate=True)
    else:
        _fill_inputs(
            gates[..., :hidden],
            [x[..., :hidden] for x in inputs],
            None if scale is None else scale[:, :hidden],
            None if shift is None else shift[:, :hidden],
            accumulate=True,
        )
    grad_gates = gates  # each chunk of pre-activations becomes its gradient, in place
    product = RecurrentProduct(low_weight.transpose(1, 2), rows=batch)  # dgates -> dgates U
    cpp_product = _cpp_product(product) if route == "cpp" else None
    out_steps = grad_out.unbind(1)
    grad_steps = grad_gates.unbind(1)
    zeta = states.new_empty(directions, min(CHUNK_STEPS, time), batch, hidden)
    dh = grad_h_n + out_steps[time - 1]
    spare = torch.empty_like(dh)
    for end in range(time, 0, -CHUNK_STEPS):
        start = max(0, end - CHUNK_STEPS)
        zeta_chunk = zeta[:, : end - start]
        chunk_valid = None if valid is None else valid[start:end]
        if positive is None:
            gate_coefficients(
                grad_gates[:, start:end],
                states[:, start:end],
                zeta_chunk,
                chunk_valid,
                drop_mask,
                nonlinearity,
            )
        else:
            gate_coefficients_from_sign(
                grad_gates[:, start:end],
                states[:, start : end + 1],
                positive[:, start:end],
                zeta_chunk,
                chunk_valid,
                drop_mask,
                nonlinearity,
            )
        if route == "triton":
            dh = loops.triton_steps().backward_chunk(
                grad_gates,
                zeta_chunk,
                weight_hh,
                grad_out,
                dh,
                start,
                end,
                u.view(directions, time, batch, two_hidden) if recurrent_norm else None,
                mean if recurrent_norm else None,
                rstd if recurrent_norm else None,
                product_dtype,
                loops.TF32,
            )
            continue
        if route == "cpp":  # the loop below, in C++
            dh, spare = cpp_loops.extension().backward_steps(
                grad_gates,
                zeta_chunk,
                cpp_product,
                grad_out,
                dh,
                spare,
                start,
                end,
                u.view(directions, time, batch, two_hidden) if recurrent_norm else None,
                mean_by_step if recurrent_norm else None,
                rstd_by_step if recurrent_norm else None,
            )
            continue
        zeta_steps = zeta_chunk.unbind(1)
        for t in range(end - 1, start - 1, -1):
            dg = grad_steps[t]
            dg.view(directions, batch, 2, hidden).mul_(dh.unsqueeze(2))
            if recurrent_norm:
                du = layer_norm_input_grad(
                    dg, u_steps[t], (two_hidden,), mean_steps[t], rstd_steps[t]
                )
                u_steps[t].copy_(du)  # u of step t is no longer needed: keep du there
                dg = du
            if t > 0:
                torch.addcmul(out_steps[t - 1], dh, zeta_steps[t - start], out=spare)
            else:
                torch.mul(dh, zeta_steps[0], out=spare)
            product.add_into(spare, dg)
            dh, spare = spare, dh
    grad_u = u if recurrent_norm else grad_gates.view(directions, time * batch, two_hidden)
    grad_weight = torch.empty_like(weight_hh)
    for d in range(directions):
        if product_dtype is None:
            torch.mm(grad_u[d].t(), prev_states[d], out=grad_weight[d])
        else:
            grad_weight[d].copy_(torch.mm(grad_u[d].t().to(product_dtype), low_states[d]))
    return grad_weight, dh, grad_gates
