"""The filterbank settings of a model and the features of one waveform (no cache, no corpus).

What training (through the feature cache of :mod:`recipes.toolkit.data.features`) and inference
(the packaged runtime carries this file) compute alike: Kaldi's filterbank
(:mod:`recipes.toolkit.data.fbank`; torchaudio's with dither) and torchaudio's deltas.

>>> cfg = FeatureConfig(num_mel_bins=23, deltas=1)
>>> cfg.dim, cfg.length_samples, cfg.shift_samples
(46, 400, 160)
>>> compute_fbank(torch.randn(1, 16000) * 1000, cfg).shape
torch.Size([98, 46])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
import torchaudio

from recipes.toolkit.data.fbank import kaldi_fbank

SAMPLE_RATE = 16000  # Hz: what the features are computed at (a corpus checks, transcribe resamples)


@dataclass(frozen=True)
class FeatureConfig:
    """Filterbank settings (the ``features`` config group)."""

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
    def from_mapping(cfg: Mapping) -> FeatureConfig:
        """Build from a (plain or OmegaConf) mapping, ignoring unknown keys such as ``name``."""
        known = FeatureConfig.__dataclass_fields__
        return FeatureConfig(**{k: cfg[k] for k in cfg if k in known})

    @property
    def dim(self) -> int:
        """Feature vector size."""
        return self.num_mel_bins * (1 + self.deltas)

    @property
    def shift_samples(self) -> int:
        return int(SAMPLE_RATE * self.frame_shift_ms / 1000)

    @property
    def length_samples(self) -> int:
        return int(SAMPLE_RATE * self.frame_length_ms / 1000)

    def to_dict(self) -> dict:
        """Every setting, as plain data."""
        return asdict(self)

    def raw_key(self) -> dict:
        """Settings that change the cached (unnormalised) features."""
        d = asdict(self)
        d.pop("normalization")
        return d


def compute_fbank(waveform: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """``[T, dim]`` float32 features of a ``[1, N]`` waveform (int16 scale, as Kaldi)."""
    if cfg.dither == 0:
        feats = kaldi_fbank(cfg.num_mel_bins, cfg.frame_length_ms, cfg.frame_shift_ms)(waveform)
    else:
        feats = torchaudio.compliance.kaldi.fbank(
            waveform,
            num_mel_bins=cfg.num_mel_bins,
            frame_length=cfg.frame_length_ms,
            frame_shift=cfg.frame_shift_ms,
            dither=cfg.dither,
            sample_frequency=SAMPLE_RATE,
            energy_floor=0.0,
        )
    if cfg.deltas:
        d1 = torchaudio.functional.compute_deltas(feats.T.unsqueeze(0)).squeeze(0)
        parts = [feats, d1.T]
        if cfg.deltas == 2:
            parts.append(torchaudio.functional.compute_deltas(d1.unsqueeze(0)).squeeze(0).T)
        feats = torch.cat(parts, dim=1)
    return feats.contiguous()
