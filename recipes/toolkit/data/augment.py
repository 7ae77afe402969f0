"""SpecAugment-style frequency and time masking of a padded batch, respecting lengths.

>>> import torch
>>> aug = SpecAugment(freq_mask=8, time_mask=10, num_freq_masks=2, num_time_masks=2)
>>> x = torch.ones(2, 50, 40)
>>> y = aug(x, torch.tensor([50, 30]))
>>> bool((y[1, 30:] == 1).all()), bool((y == 0).any())
(True, True)
"""

from __future__ import annotations

import torch


class SpecAugment(torch.nn.Module):
    """Zero ``num_freq_masks`` bands of up to ``freq_mask`` bins and ``num_time_masks`` spans of
    up to ``time_mask`` frames (never wider than a fifth of the utterance) in ``[B, T, F]``
    features; padded frames (``t >= lengths[b]``) are left untouched. Identity in eval mode."""

    def __init__(
        self, freq_mask: int = 15, time_mask: int = 20, num_freq_masks: int = 2,
        num_time_masks: int = 2, max_time_fraction: float = 0.2,
    ) -> None:  # fmt: skip
        super().__init__()
        self.freq_mask = freq_mask
        self.time_mask = time_mask
        self.num_freq_masks = num_freq_masks
        self.num_time_masks = num_time_masks
        self.max_time_fraction = max_time_fraction

    @staticmethod
    def _spans(
        size: torch.Tensor,
        max_width: torch.Tensor,
        axis_len: int,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """``[B, axis_len]`` bool mask of one random span per row within ``[0, size)``."""
        b = size.shape[0]
        width = (torch.rand(b, generator=generator) * (max_width + 1).float()).long()
        width = torch.minimum(width, size)
        start = (torch.rand(b, generator=generator) * (size - width + 1).float()).long()
        pos = torch.arange(axis_len)[None, :]
        return (pos >= start[:, None]) & (pos < (start + width)[:, None])

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Masked copy of ``feats [B, T, F]``; ``lengths [B]`` valid frames per row."""
        if not self.training:
            return feats
        bsz, t, f = feats.shape
        lengths = lengths.to("cpu").long()
        valid = torch.arange(t)[None, :] < lengths[:, None]  # [B, T]
        mask = torch.zeros(bsz, t, f, dtype=torch.bool)
        full_f = torch.full((bsz,), f)
        for _ in range(self.num_freq_masks):
            band = self._spans(full_f, torch.full((bsz,), self.freq_mask), f, generator)
            mask |= band[:, None, :]
        max_t = torch.minimum(
            torch.full((bsz,), self.time_mask), (lengths.float() * self.max_time_fraction).long()
        )
        for _ in range(self.num_time_masks):
            mask |= self._spans(lengths, max_t, t, generator)[:, :, None]
        mask &= valid[:, :, None]
        return feats.masked_fill(mask.to(feats.device), 0.0)
