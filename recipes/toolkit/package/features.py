"""The training features of a waveform without the feature cache: filterbank, deltas, norm.

The same arithmetic as :func:`recipes.toolkit.data.features.compute_fbank` (Kaldi's filterbank
of :mod:`recipes.toolkit.data.fbank`, torchaudio's with dither, torchaudio's deltas) and as the
data module's normalisation (``global``: the training mean and standard deviation in float64;
``speaker``: the utterance's own statistics, one utterance standing for its speaker; ``none``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import torch
import torchaudio

from recipes.toolkit.data.fbank import kaldi_fbank
from recipes.toolkit.data.feature_store import moments
from recipes.toolkit.package.audio import SAMPLE_RATE


@dataclass(frozen=True)
class FeatureSettings:
    """Filterbank settings of a model (the ``features`` config group's keys).

    >>> settings = FeatureSettings(num_mel_bins=23, deltas=1)
    >>> settings.dim, settings.length_samples, settings.shift_samples
    (46, 400, 160)
    >>> compute_features(torch.randn(1, 16000) * 1000, settings).shape
    torch.Size([98, 46])
    """

    num_mel_bins: int = 40
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0
    deltas: int = 0  # 0: statics, 1: + deltas, 2: + delta-deltas
    normalization: str = "global"  # global | speaker | none

    def __post_init__(self) -> None:
        if self.deltas not in (0, 1, 2):
            raise ValueError(f"deltas must be 0, 1 or 2, got {self.deltas}")
        if self.normalization not in ("global", "speaker", "none"):
            raise ValueError(f"normalization must be global|speaker|none: {self.normalization}")

    @staticmethod
    def from_mapping(cfg: Mapping) -> FeatureSettings:
        """From a mapping, ignoring unknown keys such as ``name``."""
        known = {f.name for f in fields(FeatureSettings)}
        return FeatureSettings(**{k: cfg[k] for k in cfg if k in known})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def dim(self) -> int:
        return self.num_mel_bins * (1 + self.deltas)

    @property
    def shift_samples(self) -> int:
        return int(SAMPLE_RATE * self.frame_shift_ms / 1000)

    @property
    def length_samples(self) -> int:
        return int(SAMPLE_RATE * self.frame_length_ms / 1000)


def compute_features(waveform: torch.Tensor, settings: FeatureSettings) -> torch.Tensor:
    """``[T, dim]`` float32 raw (unnormalised) features of a ``[1, N]`` waveform at int16 scale."""
    if settings.dither == 0:
        bank = kaldi_fbank(settings.num_mel_bins, settings.frame_length_ms, settings.frame_shift_ms)
        feats = bank(waveform)
    else:
        feats = torchaudio.compliance.kaldi.fbank(
            waveform,
            num_mel_bins=settings.num_mel_bins,
            frame_length=settings.frame_length_ms,
            frame_shift=settings.frame_shift_ms,
            dither=settings.dither,
            sample_frequency=SAMPLE_RATE,
            energy_floor=0.0,
        )
    if settings.deltas:
        d1 = torchaudio.functional.compute_deltas(feats.T.unsqueeze(0)).squeeze(0)
        parts = [feats, d1.T]
        if settings.deltas == 2:
            parts.append(torchaudio.functional.compute_deltas(d1.unsqueeze(0)).squeeze(0).T)
        feats = torch.cat(parts, dim=1)
    return feats.contiguous()


def normalise(
    feats: torch.Tensor, settings: FeatureSettings, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """``feats`` normalised as in training; ``mean`` and ``std``: the training data's (float64),
    used by ``global`` normalisation only.

    >>> x = torch.tensor([[1.0], [3.0]])
    >>> normalise(x, FeatureSettings(normalization="speaker"), None, None).flatten().tolist()
    [-0.7071067690849304, 0.7071067690849304]
    """
    if settings.normalization == "global":
        return ((feats.double() - mean.double()) / std.double()).float()
    if settings.normalization == "speaker":
        own_mean, own_std = moments([feats])
        return ((feats.double() - own_mean) / own_std).float()
    return feats
