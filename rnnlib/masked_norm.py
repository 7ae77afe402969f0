"""Batch normalisation over the valid frames of a padded batch."""

import torch.nn.functional as F
from torch import Tensor, nn


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """Batch norm over the features of ``[batch, time, features]``, ignoring padded frames.

    In training mode, mean and variance come from the valid frames only (``mask`` True), so a
    sequence gives the same result whatever padding surrounds it. Padded output frames are zero.

    Example:
        >>> import torch
        >>> bn = MaskedBatchNorm1d(4)
        >>> x = torch.randn(2, 5, 4)
        >>> mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
        >>> y = bn(x, mask)
        >>> y.shape, bool((y[1, 3:] == 0).all())
        (torch.Size([2, 5, 4]), True)
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        if mask is None:
            flat = x.reshape(-1, x.shape[-1])
            return self._normalise(flat).view_as(x)
        out = x.new_zeros(x.shape)
        out[mask] = self._normalise(x[mask])
        return out

    def _normalise(self, frames: Tensor) -> Tensor:
        use_batch_stats = self.training or self.running_mean is None
        momentum = self.momentum if self.momentum is not None else 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(
            frames,
            self.running_mean if not self.training or self.track_running_stats else None,
            self.running_var if not self.training or self.track_running_stats else None,
            self.weight,
            self.bias,
            use_batch_stats,
            momentum,
            self.eps,
        )
