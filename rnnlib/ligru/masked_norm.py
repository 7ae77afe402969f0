r"""Batch normalisation over the valid frames of a padded batch, lean on memory.

.. math::
    \hat x = (x - \mu) / \sqrt{\sigma^2 + \epsilon}, \qquad y = \gamma \hat x + \beta

with ``mu`` and ``sigma^2`` (biased) taken over the valid frames of the batch in training and the
running estimates in evaluation. The normalisation is a custom autograd function that keeps only
``x_hat`` (its output) and ``1 / sigma`` for the backward, never its input: a layer that saves
``x_hat`` anyway (the Light GRU kernel does) pays for it once. Masks are applied by multiplying,
never by boolean indexing, so no copy of the valid frames is made.
"""

import torch
from torch import Tensor, nn

from rnnlib.torch_internals import native_batch_norm


def masked_normalise(
    x: Tensor,
    mask: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    use_batch_stats: bool,
    momentum: float,
    eps: float,
) -> Tensor:
    """Return ``x_hat`` ``[batch, time, C]`` (zero on padded frames), updating running stats.

    ``mask [batch, time]`` (True on valid frames) or None. With ``use_batch_stats`` the statistics
    come from the valid frames and the running estimates (if given) move by ``momentum`` towards
    them (unbiased variance, as :func:`torch.nn.functional.batch_norm`); otherwise the running
    estimates normalise.

    >>> x = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> masked_normalise(x, torch.tensor([[True, True, False]]), None, None, True, 0.1, 0.0)
    tensor([[[-1.],
             [ 1.],
             [ 0.]]])
    """
    valid = valid_frames(mask, x.dtype)
    if not use_batch_stats:
        x_hat = (x - running_mean) * torch.rsqrt(running_var + eps)
        return x_hat if valid is None else x_hat * valid
    x_hat, mean, var = normalise_frames(x, mask, eps)
    if running_mean is not None:
        update_running_stats(running_mean, running_var, mean, var, frame_count(x, mask), momentum)
    return x_hat


def normalise_frames(x: Tensor, mask: Tensor | None, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(x_hat, mean, var)`` of ``x [batch, time, C]`` with batch statistics over the valid
    frames (differentiable in ``x``; ``mean`` and biased ``var`` are not), no running estimates.

    >>> x_hat, mean, var = normalise_frames(torch.tensor([[[1.0], [3.0], [9.0]]]),
    ...                                     torch.tensor([[True, True, False]]), 0.0)
    >>> x_hat.flatten().tolist(), mean.item(), var.item()
    ([-1.0, 1.0, 0.0], 2.0, 1.0)
    """
    return _MaskedNormalise.apply(x, valid_frames(mask, x.dtype), eps)


def valid_frames(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """``mask [batch, time]`` as ``[batch, time, 1]`` of ``dtype`` (1 on valid frames), or None."""
    return None if mask is None else mask.unsqueeze(-1).to(dtype)


def frame_count(x: Tensor, mask: Tensor | None) -> Tensor | int:
    """Valid frames of ``x [batch, time, ...]``: all of them, or the sum of ``mask`` (bool, or
    the 0/1 weights of :func:`valid_frames`)."""
    return x.shape[0] * x.shape[1] if mask is None else mask.sum()


def update_running_stats(
    running_mean: Tensor,
    running_var: Tensor,
    mean: Tensor,
    var: Tensor,
    count: Tensor | int,
    momentum: float,
) -> None:
    """Move the running estimates by ``momentum`` towards a batch's ``mean`` and biased ``var``
    over ``count`` frames (the variance made unbiased first, as :class:`torch.nn.BatchNorm1d`)."""
    with torch.no_grad():
        running_mean.lerp_(mean.to(running_mean.dtype), momentum)
        count = torch.as_tensor(count, dtype=var.dtype, device=var.device)
        unbiased = var * (count / (count - 1).clamp_min(1))
        running_var.lerp_(unbiased.to(running_var.dtype), momentum)


def frame_statistics(
    x: Tensor, valid: Tensor | None, eps: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_hat, mean, var, rstd)`` of ``x [batch, time, C]`` over its valid frames, no autograd.

    ``valid [batch, time, 1]`` (1 on valid frames) or None; ``var`` is biased, ``rstd`` is
    ``1 / sqrt(var + eps)``; ``x_hat`` is zero on padded frames.

    >>> x_hat, mean, var, rstd = frame_statistics(torch.tensor([[[1.0], [3.0]]]), None, 0.0)
    >>> x_hat.flatten().tolist(), mean.item(), var.item()
    ([-1.0, 1.0], 2.0, 1.0)
    """
    channels = x.shape[-1]
    if valid is None:  # ATen's batch norm: statistics and x_hat in two passes over the frames
        flat = x.reshape(-1, channels)
        x_hat, mean, rstd = native_batch_norm(flat, eps)
        var = rstd.pow(-2).sub_(eps).clamp_min_(0)
        return x_hat.view_as(x), mean, var, rstd
    # Sums over the contiguous frame axis, then one centred pass: faster than var_mean here.
    count = valid.sum()  # lengths are >= 1, so never zero
    mean = (x.reshape(-1, channels) * valid.reshape(-1, 1)).sum(0) / count
    centred = (x - mean).mul_(valid)
    var = centred.square().reshape(-1, channels).sum(0) / count
    rstd = torch.rsqrt(var + eps)
    return centred.mul_(rstd), mean, var, rstd


def normalise_backward(
    grad: Tensor,
    x_hat: Tensor,
    rstd: Tensor,
    valid: Tensor | None,
    count: Tensor | int,
    scale: Tensor | None = None,
    out: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Backward of ``y = scale * x_hat + shift`` (``y = x_hat`` without ``scale``) through the
    batch statistics: ``(grad_x, sum(grad), sum(grad * x_hat))``, the sums over valid frames
    being the gradients of ``shift`` and ``scale``.

    ``grad`` is ``dL/dy`` ``[batch, time, C]`` in any memory layout (a view of a time-major
    buffer works); ``grad_x`` comes in the layout of ``grad``, or in ``out``. Four passes over
    the frames:

    .. math::
        \frac{dL}{dx} = \gamma r \left(g - \overline{g} - \hat x \, \overline{g \hat x}\right)

    >>> x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    >>> g = torch.randn(2, 5, 3, dtype=torch.float64)
    >>> x_hat, _, _, rstd = frame_statistics(x.detach(), None, 1e-5)
    >>> y = torch.nn.functional.batch_norm(x.transpose(1, 2), None, None, training=True)
    >>> expected, = torch.autograd.grad(y, x, g.transpose(1, 2))
    >>> torch.allclose(normalise_backward(g, x_hat, rstd, None, 10)[0], expected)
    True
    """
    if valid is not None:
        grad = grad * valid
    frames = (0, 1)  # sums over frames work on any strides
    grad_sum = grad.sum(frames)
    grad_x_hat_sum = (grad * x_hat).sum(frames)
    gain = rstd if scale is None else rstd * scale
    offset = grad_sum * (gain / -count)
    if out is not None:
        grad_x = torch.addcmul(offset, grad, gain, out=out)
    else:
        grad_x = torch.addcmul(offset, grad, gain)
    grad_x.addcmul_(x_hat, grad_x_hat_sum * (gain / -count))
    if valid is not None:
        grad_x.mul_(valid)
    return grad_x, grad_sum, grad_x_hat_sum


class _MaskedNormalise(torch.autograd.Function):
    """``x -> x_hat`` with batch statistics over valid frames; saves ``x_hat`` and ``1/sigma``."""

    @staticmethod
    def forward(ctx, x, valid, eps):
        x_hat, mean, var, rstd = frame_statistics(x, valid, eps)
        ctx.save_for_backward(x_hat, rstd, valid)
        ctx.count = frame_count(x, valid)
        ctx.mark_non_differentiable(mean, var)
        return x_hat, mean, var

    @staticmethod
    def backward(ctx, grad_x_hat, _grad_mean, _grad_var):
        x_hat, rstd, valid = ctx.saved_tensors
        return normalise_backward(grad_x_hat, x_hat, rstd, valid, ctx.count)[0], None, None


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """Batch norm over the features of ``[batch, time, features]``, ignoring padded frames.

    In training mode, mean and variance come from the valid frames only (``mask`` True), so a
    sequence gives the same result whatever padding surrounds it. Padded output frames are zero.
    :meth:`normalise` returns ``x_hat`` without the affine step, for layers that fuse it.

    Example:
        >>> bn = MaskedBatchNorm1d(4)
        >>> x = torch.randn(2, 5, 4)
        >>> mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
        >>> y = bn(x, mask)
        >>> y.shape, bool((y[1, 3:] == 0).all())
        (torch.Size([2, 5, 4]), True)
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        x_hat = self.normalise(x, mask)
        if not self.affine:
            return x_hat
        y = torch.addcmul(self.bias, x_hat, self.weight)
        return y if mask is None else y * mask.unsqueeze(-1)

    def record_batch_stats(self, mean: Tensor, var: Tensor, count: Tensor | int) -> None:
        """Count a training batch and move the running estimates (if tracked) towards its
        ``mean`` and biased ``var`` over ``count`` frames, as :meth:`normalise` does."""
        if not (self.training and self.track_running_stats):
            return
        self.num_batches_tracked.add_(1)
        momentum = self.momentum
        if momentum is None:  # cumulative moving average, as nn.BatchNorm1d
            momentum = 1.0 / float(self.num_batches_tracked)
        update_running_stats(self.running_mean, self.running_var, mean, var, count, momentum)

    def uses_batch_stats(self) -> bool:
        """Whether :meth:`normalise` takes the statistics from the batch (training)."""
        return self.training or self.running_mean is None

    def folded_affine(self) -> tuple[Tensor, Tensor]:
        """``(scale, shift)`` with ``y = scale * x + shift`` under the running statistics.

        >>> bn = MaskedBatchNorm1d(3).eval()
        >>> scale, shift = bn.folded_affine()
        >>> x = torch.randn(2, 4, 3)
        >>> torch.allclose(bn(x), scale * x + shift, atol=1e-6)
        True
        """
        rstd = torch.rsqrt(self.running_var + self.eps)
        scale = rstd if self.weight is None else self.weight * rstd
        shift = -self.running_mean * scale
        return scale, shift if self.bias is None else shift + self.bias

    def normalise(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x_hat`` ``[batch, time, features]``: normalised, no affine step, zero on padding."""
        if not self.uses_batch_stats():
            return masked_normalise(
                x, mask, self.running_mean, self.running_var, False, 0.0, self.eps
            )
        x_hat, mean, var = normalise_frames(x, mask, self.eps)
        self.record_batch_stats(mean, var, frame_count(x, mask))
        return x_hat
