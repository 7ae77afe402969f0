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
    valid = None if mask is None else mask.unsqueeze(-1).to(x.dtype)
    if not use_batch_stats:
        x_hat = (x - running_mean) * torch.rsqrt(running_var + eps)
        return x_hat if valid is None else x_hat * valid
    x_hat, mean, var = _MaskedNormalise.apply(x, valid, eps)
    if running_mean is not None:
        with torch.no_grad():
            count = var.new_tensor(x.shape[0] * x.shape[1]) if valid is None else valid.sum()
            running_mean.lerp_(mean.to(running_mean.dtype), momentum)
            unbiased = var * (count / (count - 1).clamp_min(1))
            running_var.lerp_(unbiased.to(running_var.dtype), momentum)
    return x_hat


class _MaskedNormalise(torch.autograd.Function):
    """``x -> x_hat`` with batch statistics over valid frames; saves ``x_hat`` and ``1/sigma``."""

    @staticmethod
    def forward(ctx, x, valid, eps):
        channels = x.shape[-1]
        flat = x.reshape(-1, channels)
        # Sums over the contiguous frame axis, then one centred pass: faster than var_mean here.
        if valid is None:
            count = flat.shape[0]
            mean = flat.sum(0) / count
            centred = x - mean
        else:
            count = valid.sum()  # lengths are >= 1, so never zero
            mean = (flat * valid.reshape(-1, 1)).sum(0) / count
            centred = (x - mean).mul_(valid)
        var = centred.square().reshape(-1, channels).sum(0) / count
        rstd = torch.rsqrt(var + eps)
        x_hat = centred.mul_(rstd)
        ctx.save_for_backward(x_hat, rstd, valid)
        ctx.count = count
        ctx.mark_non_differentiable(mean, var)
        return x_hat, mean, var

    @staticmethod
    def backward(ctx, grad_x_hat, _grad_mean, _grad_var):
        x_hat, rstd, valid = ctx.saved_tensors
        grad = grad_x_hat if valid is None else grad_x_hat * valid
        frames = (0, 1)  # sums over frames work on any strides (the kernel's gradient is a view)
        mean_grad = grad.sum(frames) / ctx.count
        mean_grad_x_hat = (grad * x_hat).sum(frames) / ctx.count
        grad_x = x_hat * -mean_grad_x_hat
        grad_x.add_(grad).sub_(mean_grad)
        if valid is not None:
            grad_x.mul_(valid)
        return grad_x.mul_(rstd), None, None


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
        use_batch_stats = self.uses_batch_stats()
        track = self.training and self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        if track:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average, as nn.BatchNorm1d
                momentum = 1.0 / float(self.num_batches_tracked)
        use_running = track or not use_batch_stats  # updated, or used to normalise
        return masked_normalise(
            x,
            mask,
            self.running_mean if use_running else None,
            self.running_var if use_running else None,
            use_batch_stats,
            momentum,
            self.eps,
        )
