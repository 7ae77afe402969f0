"""The training features of a waveform without the feature cache: filterbank, deltas, norm.

The features of :mod:`recipes.toolkit.data.feature_config` (the module training uses), and the
data module's normalisation (``global``: the training mean and standard deviation in float64;
``speaker``: the utterance's own statistics, one utterance standing for its speaker; ``none``).
"""

from __future__ import annotations

import torch

from recipes.toolkit.data.feature_config import FeatureConfig, compute_fbank
from recipes.toolkit.data.feature_store import moments

__all__ = ["FeatureConfig", "compute_fbank", "normalise"]


def normalise(
    feats: torch.Tensor, settings: FeatureConfig, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """``feats`` normalised as in training; ``mean`` and ``std``: the training data's (float64),
    used by ``global`` normalisation only.

    >>> x = torch.tensor([[1.0], [3.0]])
    >>> normalise(x, FeatureConfig(normalization="speaker"), None, None).flatten().tolist()
    [-0.7071067690849304, 0.7071067690849304]
    """
    if settings.normalization == "global":
        return ((feats.double() - mean.double()) / std.double()).float()
    if settings.normalization == "speaker":
        own_mean, own_std = moments([feats])
        return ((feats.double() - own_mean) / own_std).float()
    return feats
