"""Label sequences for audio files (NIST SPHERE, WAV, FLAC, any rate) from a trained recogniser."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf
import torch
import torchaudio

from recipes.toolkit.data.features import SAMPLE_RATE, FeatureConfig, compute_fbank, moments
from recipes.toolkit.evaluation.scoring import apply_score_map
from recipes.toolkit.recognizer import SpeechRecognizer


def read_audio(path: Path) -> torch.Tensor:
    """``[1, N]`` mono waveform at 16 kHz, int16 scale (as the training features)."""
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except RuntimeError as error:
        raise ValueError(f"{path}: not a readable audio file ({error})") from error
    wave = torch.from_numpy(data.mean(axis=1)).unsqueeze(0) * 32768.0
    if rate != SAMPLE_RATE:
        wave = torchaudio.functional.resample(wave, rate, SAMPLE_RATE)
    return wave


def features_for(module: SpeechRecognizer, wave: torch.Tensor) -> torch.Tensor:
    """Filterbanks normalised as in training (per-utterance for speaker normalisation)."""
    cfg = FeatureConfig.from_mapping(module.hparams.features)
    feats = compute_fbank(wave, cfg)
    if cfg.normalization == "global":
        mean, std = module.feature_mean.double(), module.feature_std.double()
        return ((feats.double() - mean) / std).float()
    if cfg.normalization == "speaker":
        mean, std = moments([feats])
        return ((feats.double() - mean) / std).float()
    return feats


def transcribe(module: SpeechRecognizer, paths: list[Path], score: bool = True) -> list[list[str]]:
    """Decode each file with the module's decoding options; ``score``: map to the scoring set."""
    results = []
    for path in paths:
        feats = features_for(module, read_audio(path))
        with torch.no_grad():
            lengths = torch.tensor([len(feats)])
            labels = module.decode(module(feats[None], lengths), lengths)[0]
        results.append(apply_score_map(labels, module.hparams.score_map) if score else labels)
    return results
