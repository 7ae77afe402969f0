"""Waveform augmentation after SpeechBrain's TIMIT recipe: speed perturbation, frequency dropping
(band-stop filters at random bands) and chunk dropping (random spans of samples zeroed).

Every draw comes from the ``torch.Generator`` it is given; :func:`item_generator` makes one from
the run's seed, the epoch and the item's index, so that a repeated or resumed run augments every
utterance the same way.

>>> aug = WaveformAugment(speeds=[105])
>>> wave = torch.randn(1, 16000) * 1000
>>> out = aug(wave, item_generator(seed=1, epoch=0, index=3))
>>> out.shape
torch.Size([1, 16800])
>>> torch.equal(out, aug(wave, item_generator(seed=1, epoch=0, index=3)))
True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch
import torchaudio
from torch import Tensor


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, epoch, index)`` (a hash: neighbours are unrelated).

    >>> a, b = item_generator(1, 0, 5), item_generator(1, 1, 5)
    >>> bool(torch.rand(1, generator=a) != torch.rand(1, generator=b))
    True
    """
    digest = hashlib.sha256(f"{int(seed)}/{int(epoch)}/{int(index)}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """Uniform integer in ``[low, high]`` (both included)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand(1, generator=generator, dtype=torch.float64))


def _pair(value: Sequence, key: str, minimum: float = 0) -> tuple:
    low, high = value
    if not minimum <= low <= high:
        raise ValueError(f"augment.{key} must be [low, high] with {minimum} <= low <= high, "
                         f"got {list(value)}")  # fmt: skip
    return low, high


def _polymul(p: Tensor, q: Tensor) -> Tensor:
    """The coefficients of the product of two polynomials (of ``z^-1``)."""
    out = torch.zeros(len(p) + len(q) - 1, dtype=p.dtype)
    for k, c in enumerate(p):
        out[k : k + len(q)] += c * q
    return out


def band_stop(
    wave: Tensor, centres_hz: Sequence[float], width_hz: float, sample_rate: int
) -> Tensor:
    """``wave [channels, samples]`` through a band-reject biquad at each of ``centres_hz``, each
    ``width_hz`` wide at -3 dB wherever it is (torchaudio's ``bandreject_biquad`` coefficients with
    ``alpha = tan(pi * width / rate)``, i.e. ``Q = sin(w0) / (2 alpha)``), the biquads multiplied
    into one filter that torchaudio's ``lfilter`` runs in float64 without clamping (the waveform
    is at int16 scale, not within [-1, 1]).

    >>> t = torch.arange(16000) / 16000
    >>> tone = torch.sin(2 * math.pi * 1000 * t)[None] * 1000
    >>> bool(band_stop(tone, [1000.0], 400.0, 16000)[:, 4000:].abs().max() < 10)
    True
    """
    if not len(centres_hz):
        return wave
    a = b = torch.ones(1, dtype=torch.float64)
    alpha = math.tan(math.pi * width_hz / sample_rate)
    for centre in centres_hz:
        cos = math.cos(2 * math.pi * centre / sample_rate)
        b = _polymul(b, torch.tensor([1.0, -2 * cos, 1.0], dtype=torch.float64))
        a = _polymul(a, torch.tensor([1.0 + alpha, -2 * cos, 1.0 - alpha], dtype=torch.float64))
    out = torchaudio.functional.lfilter(wave.double(), a, b, clamp=False)
    return out.to(wave.dtype)


class WaveformAugment:
    """Speed perturbation, frequency dropping and chunk dropping of one ``[1, samples]`` waveform,
    in that order, each with its probability (SpeechBrain's TIMIT recipe applies all three).

    Args:
        speeds: the speed is one of these, in percent, drawn uniformly: the waveform is resampled
            from 100 to ``speed`` (torchaudio's ``Resample``, a windowed sinc) and read at the
            original rate, so it has ``speed / 100`` times the samples (and the frames).
        speed_prob: the chance of perturbing the speed at all.
        drop_freq_count: ``[low, high]`` band-stop filters applied (uniform count).
        drop_freq_range_hz: the range the centre of each band is drawn from, uniformly.
        drop_freq_width_hz: the width of each stopped band.
        drop_freq_prob: the chance of dropping frequencies at all.
        drop_chunk_count: ``[low, high]`` chunks zeroed.
        drop_chunk_length: ``[low, high]`` samples per chunk (never more than the utterance).
        drop_chunk_prob: the chance of dropping chunks at all.
        sample_rate: of the waveforms, in Hz.
    """

    def __init__(
        self,
        speeds: Sequence[int] = (95, 100, 105),
        speed_prob: float = 1.0,
        drop_freq_count: Sequence[int] = (0, 3),
        drop_freq_range_hz: Sequence[float] = (200.0, 7800.0),
        drop_freq_width_hz: float = 400.0,
        drop_freq_prob: float = 1.0,
        drop_chunk_count: Sequence[int] = (0, 5),
        drop_chunk_length: Sequence[int] = (1000, 2000),
        drop_chunk_prob: float = 1.0,
        sample_rate: int = 16000,
    ) -> None:
        self.speeds = [int(s) for s in speeds]
        if not self.speeds or min(self.speeds) <= 0:
            raise ValueError(f"augment.speeds must be positive percentages, got {self.speeds}")
        for key, p in (("speed_prob", speed_prob), ("drop_freq_prob", drop_freq_prob),
                       ("drop_chunk_prob", drop_chunk_prob)):  # fmt: skip
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"augment.{key} must be within [0, 1], got {p}")
        self.speed_prob = float(speed_prob)
        self.drop_freq_count = tuple(int(n) for n in _pair(drop_freq_count, "drop_freq_count"))
        low, high = _pair([float(f) for f in drop_freq_range_hz], "drop_freq_range_hz", 1e-3)
        if high >= sample_rate / 2:
            raise ValueError(f"augment.drop_freq_range_hz must stay below {sample_rate / 2} Hz")
        self.drop_freq_range_hz = (low, high)
        if float(drop_freq_width_hz) <= 0:
            raise ValueError(f"augment.drop_freq_width_hz must be positive: {drop_freq_width_hz}")
        self.drop_freq_width_hz = float(drop_freq_width_hz)
        self.drop_freq_prob = float(drop_freq_prob)
        self.drop_chunk_count = tuple(int(n) for n in _pair(drop_chunk_count, "drop_chunk_count"))
        self.drop_chunk_length = tuple(
            int(n) for n in _pair(drop_chunk_length, "drop_chunk_length", 1)
        )
        self.drop_chunk_prob = float(drop_chunk_prob)
        self.sample_rate = int(sample_rate)
        self._resamplers = {
            s: torchaudio.transforms.Resample(100, s) for s in set(self.speeds) if s != 100
        }

    @property
    def max_speed(self) -> int:
        """The largest speed, in percent (what bounds the frames of a perturbed utterance)."""
        return max(self.speeds)

    # ----- draws -------------------------------------------------------------------------------
    def draw_speed(self, generator: torch.Generator) -> int:
        """The speed of this utterance, in percent (100: unchanged)."""
        use = float(torch.rand(1, generator=generator)) < self.speed_prob
        speed = self.speeds[_randint(0, len(self.speeds) - 1, generator)]
        return speed if use else 100

    def draw_bands(self, generator: torch.Generator) -> list[float]:
        """The centres (Hz) of the bands to stop; empty: none."""
        use = float(torch.rand(1, generator=generator)) < self.drop_freq_prob
        count = _randint(*self.drop_freq_count, generator)
        centres = [_uniform(*self.drop_freq_range_hz, generator) for _ in range(count)]
        return centres if use else []

    def draw_chunks(self, num_samples: int, generator: torch.Generator) -> list[tuple[int, int]]:
        """``(start, end)`` sample spans to zero, each within ``[0, num_samples)``."""
        use = float(torch.rand(1, generator=generator)) < self.drop_chunk_prob
        chunks = []
        for _ in range(_randint(*self.drop_chunk_count, generator)):
            length = min(_randint(*self.drop_chunk_length, generator), num_samples)
            start = _randint(0, num_samples - length, generator)
            chunks.append((start, start + length))
        return chunks if use else []

    # ----- operations --------------------------------------------------------------------------
    def perturb_speed(self, wave: Tensor, speed: int) -> Tensor:
        """``wave`` with ``speed / 100`` times its samples (the same sound, faster or slower)."""
        if speed == 100:
            return wave
        resampler = self._resamplers.get(speed) or torchaudio.transforms.Resample(100, speed)
        return resampler(wave)

    def drop_freq(self, wave: Tensor, centres: Sequence[float]) -> Tensor:
        """``wave`` with a band of ``drop_freq_width_hz`` stopped at each of ``centres``."""
        return band_stop(wave, centres, self.drop_freq_width_hz, self.sample_rate)

    @staticmethod
    def drop_chunks(wave: Tensor, chunks: Sequence[tuple[int, int]]) -> Tensor:
        """A copy of ``wave [channels, samples]`` with the sample spans ``chunks`` zeroed."""
        if not chunks:
            return wave
        wave = wave.clone()
        for start, end in chunks:
            wave[..., start:end] = 0.0
        return wave

    def __call__(self, wave: Tensor, generator: torch.Generator) -> Tensor:
        """The augmented copy of ``wave [1, samples]`` (int16 scale, ``sample_rate``)."""
        wave = self.perturb_speed(wave, self.draw_speed(generator))
        wave = self.drop_freq(wave, self.draw_bands(generator))
        return self.drop_chunks(wave, self.draw_chunks(wave.shape[-1], generator))
