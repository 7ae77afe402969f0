"""Label sequences for audio files (NIST SPHERE, WAV, FLAC, any rate) from a trained recogniser.

:func:`transcribe` decodes every file it can and says why it could not decode the others: one
:class:`Transcription` per file, in order, with its labels or the reason it has none (a missing
or unreadable file, one that is not audio, an empty one, one too short for a single analysis
frame).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
import torch
import torchaudio

from recipes.toolkit.data.feature_store import moments
from recipes.toolkit.data.features import SAMPLE_RATE, FeatureConfig, compute_fbank
from recipes.toolkit.evaluation.scoring import apply_score_map
from recipes.toolkit.recognizer import SpeechRecognizer


@dataclass(frozen=True)
class Transcription:
    """What :func:`transcribe` made of one file: its ``labels``, or the ``error`` saying why
    there are none (the message names the file)."""

    path: Path
    labels: list[str] | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def read_audio(path: Path) -> torch.Tensor:
    """``[1, N]`` mono waveform at 16 kHz, int16 scale (as the training features).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for one that is not
    readable audio or holds no samples; both messages name the file.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: audio file not found")
    if path.is_dir():
        raise ValueError(f"{path}: a directory, not an audio file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file (0 bytes), not an audio file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as error:
        raise ValueError(f"{path}: not a readable audio file ({error})") from error
    if data.shape[0] == 0:
        raise ValueError(f"{path}: empty audio (no samples)")
    wave = torch.from_numpy(data.mean(axis=1)).unsqueeze(0) * 32768.0
    if rate != SAMPLE_RATE:
        wave = torchaudio.functional.resample(wave, rate, SAMPLE_RATE)
    return wave


def check_long_enough(path: Path | str, num_samples: int, cfg: FeatureConfig) -> None:
    """Raise ``ValueError`` naming ``path``, its duration and the minimum when ``num_samples``
    (at 16 kHz) are fewer than one analysis frame of ``cfg`` needs (its window,
    ``cfg.length_samples``); the filterbank has no frame to give for such audio.

    >>> check_long_enough("a.wav", 400, FeatureConfig())
    >>> check_long_enough("a.wav", 100, FeatureConfig())  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    ValueError: a.wav: too short to transcribe: 6.25 ms (100 samples at 16 kHz),
    less than one analysis frame (25 ms, 400 samples)
    >>> check_long_enough("b.wav", 300, FeatureConfig(frame_length_ms=15.0))
    """
    need = cfg.length_samples
    if num_samples >= need:
        return
    if num_samples == 0:
        raise ValueError(f"{path}: empty audio (no samples)")
    raise ValueError(
        f"{path}: too short to transcribe: {_ms(num_samples)} ms ({num_samples} samples at "
        f"{SAMPLE_RATE // 1000} kHz), less than one analysis frame ({_ms(need)} ms, {need} samples)"
    )


def _ms(num_samples: int) -> str:
    return f"{round(1000 * num_samples / SAMPLE_RATE, 2):g}"


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


def decode_wave(module: SpeechRecognizer, wave: torch.Tensor, score: bool = True) -> list[str]:
    """Labels of one waveform (from :func:`read_audio`, long enough for one frame);
    ``score``: mapped to the scoring set."""
    feats = features_for(module, wave)
    with torch.no_grad():
        lengths = torch.tensor([len(feats)])
        labels = module.decode(module(feats[None], lengths), lengths)[0]
    return apply_score_map(labels, module.hparams.score_map) if score else labels


def transcribe(
    module: SpeechRecognizer, paths: Sequence[Path], score: bool = True
) -> list[Transcription]:
    """Decode each file with the module's decoding options; ``score``: map to the scoring set.

    One :class:`Transcription` per path, in order: a file that cannot be read or is too short
    gets its reason instead of labels, and the other files are decoded all the same.
    """
    cfg = FeatureConfig.from_mapping(module.hparams.features)
    results = []
    for path in paths:
        try:
            wave = read_audio(Path(path))
            check_long_enough(path, wave.shape[-1], cfg)
        except (OSError, ValueError) as error:
            results.append(Transcription(Path(path), None, str(error)))
            continue
        results.append(Transcription(Path(path), decode_wave(module, wave, score)))
    return results


def failure_summary(results: Sequence[Transcription]) -> str | None:
    """``"N of M files could not be transcribed: ..."`` with every reason, or None if none failed.

    >>> good = Transcription(Path("a.wav"), ["sil"])
    >>> bad = Transcription(Path("b.wav"), None, "b.wav: audio file not found")
    >>> failure_summary([good]) is None
    True
    >>> failure_summary([good, bad])
    '1 of 2 files could not be transcribed: b.wav: audio file not found'
    """
    failed = [r for r in results if not r.ok]
    if not failed:
        return None
    reasons = "; ".join(str(r.error) for r in failed)
    return f"{len(failed)} of {len(results)} files could not be transcribed: {reasons}"
