"""Audio for recognition: files or waveforms -> ``[1, N]`` mono at 16 kHz, int16 scale.

Files are read with soundfile (NIST SPHERE, WAV, FLAC, ...) where it is installed, else with the
standard library's ``wave`` (PCM WAV only), and resampled to 16 kHz. Every error names the file.

>>> as_waveform(torch.ones(3), 16000).shape
torch.Size([1, 3])
>>> as_waveform(torch.ones(2, 8000), 8000).shape  # two channels averaged, resampled
torch.Size([1, 16000])
"""

from __future__ import annotations

import wave as wave_module
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torchaudio

SAMPLE_RATE = 16000  # Hz: what the features are computed at
INT16_SCALE = 32768.0  # float samples in [-1, 1) -> int16 scale, as the training features


class FrameGeometry(Protocol):
    """What the too-short check needs of a feature configuration."""

    @property
    def length_samples(self) -> int: ...


def read_audio(path: Path) -> torch.Tensor:
    """``[1, N]`` mono waveform at 16 kHz, int16 scale (as the training features).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for one that is not
    readable audio or holds no samples; both messages name the file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: audio file not found")
    if path.is_dir():
        raise ValueError(f"{path}: a directory, not an audio file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file (0 bytes), not an audio file")
    try:
        data, rate = _read_samples(path)
    except (RuntimeError, OSError, EOFError, wave_module.Error) as error:
        raise ValueError(f"{path}: not a readable audio file ({error})") from error
    if data.shape[0] == 0:
        raise ValueError(f"{path}: empty audio (no samples)")
    mono = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    return as_waveform(mono * INT16_SCALE, rate)


def _read_samples(path: Path) -> tuple[np.ndarray, int]:
    """``[N, channels]`` float32 samples in [-1, 1) and the rate."""
    try:
        import soundfile
    except ImportError:  # the standard library's reader: PCM WAV only
        return read_pcm_wav(path)
    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return data, int(rate)


def read_pcm_wav(path: Path) -> tuple[np.ndarray, int]:
    """``[N, channels]`` float32 samples in [-1, 1) and the rate of a PCM WAV file (8, 16, 24
    or 32 bits), scaled as soundfile scales them."""
    with wave_module.open(str(path), "rb") as reader:
        width, channels = reader.getsampwidth(), reader.getnchannels()
        rate, raw = reader.getframerate(), reader.readframes(reader.getnframes())
    if width == 1:  # unsigned 8 bit
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width in (2, 3, 4):
        bytes_ = np.frombuffer(raw, dtype=np.uint8).reshape(-1, width)
        padded = np.zeros((len(bytes_), 4), dtype=np.uint8)
        padded[:, 4 - width :] = bytes_  # little-endian sample in the high bytes of an int32
        samples = (padded.view("<i4")[:, 0] / 2.0**31).astype(np.float32)
    else:
        raise wave_module.Error(f"unsupported sample width of {width} bytes")
    return samples.reshape(-1, channels), rate


def as_waveform(samples: torch.Tensor | np.ndarray, sample_rate: int) -> torch.Tensor:
    """``[1, N]`` float32 mono at 16 kHz of ``[N]`` or ``[channels, N]`` samples (int16 scale)
    at ``sample_rate``: channels averaged, resampled with torchaudio."""
    wave = torch.as_tensor(samples).float()
    if wave.dim() == 1:
        wave = wave[None]
    if wave.dim() != 2:
        raise ValueError(f"a waveform must be [samples] or [channels, samples], got {wave.shape}")
    wave = wave.mean(dim=0, keepdim=True) if wave.shape[0] > 1 else wave
    if sample_rate != SAMPLE_RATE:
        wave = torchaudio.functional.resample(wave, int(sample_rate), SAMPLE_RATE)
    return wave


def check_long_enough(path: Path | str, num_samples: int, cfg: FrameGeometry) -> None:
    """Raise ``ValueError`` naming ``path``, its duration and the minimum when ``num_samples``
    (at 16 kHz) are fewer than one analysis frame of ``cfg`` needs (its window,
    ``cfg.length_samples``); the filterbank has no frame to give for such audio.

    >>> from recipes.toolkit.package.features import FeatureConfig
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
