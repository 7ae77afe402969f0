"""SpecAugment masking of padded batches."""

import torch

from recipes.toolkit.data.augment import SpecAugment


def test_masks_only_valid_frames_and_changes_something():
    torch.manual_seed(0)
    aug = SpecAugment(freq_mask=10, time_mask=15, num_freq_masks=2, num_time_masks=2)
    x = torch.randn(4, 120, 40) + 5.0
    lengths = torch.tensor([120, 80, 50, 10])
    for b, n in enumerate(lengths):
        x[b, n:] = -7.0  # padding
    g = torch.Generator().manual_seed(1)
    y = aug(x, lengths, generator=g)
    assert y.shape == x.shape
    for b, n in enumerate(lengths):
        assert torch.equal(y[b, n:], x[b, n:])  # padding untouched
        changed = y[b, :n] != x[b, :n]
        assert changed.any()
        assert (y[b, :n][changed] == 0).all()  # masked to zero (the normalised mean)
    # time masks stay within a fifth of each utterance
    full_time = (y == 0).all(dim=2).sum(dim=1)
    assert (full_time <= 2 * (lengths.float() * 0.2).long()).all()
    g2 = torch.Generator().manual_seed(1)
    assert torch.equal(aug(x, lengths, generator=g2), y)  # reproducible from a generator


def test_eval_mode_is_identity():
    aug = SpecAugment().eval()
    x = torch.randn(2, 30, 40)
    assert aug(x, torch.tensor([30, 20])) is x
