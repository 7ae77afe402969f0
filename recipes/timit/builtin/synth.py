"""Source-filter synthesis of TIMIT-like speech from a 61-phone sequence (numpy only).

Each phone has acoustic targets: formants (start and end, so diphthongs glide) on a glottal pulse
train, a frication noise band, formant-shaped aspiration, a nasal antiformant, and an amplitude
shape (stop bursts decay). Targets are laid out per 5 ms frame, smoothed across phone boundaries
(coarticulation: formant transitions toward stop loci, crossfaded amplitudes), and applied as a
time-varying filter by short-time Fourier filtering. A :class:`Voice` scales formants (vocal tract
length), pitch, speaking rate, level and background noise per speaker.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> audio, segs = synthesize(["h#", "s", "iy", "h#"], Voice.random(rng, "f"), rng)
>>> audio.dtype.name, segs[0][0], segs[-1][1] == len(audio), [s[2] for s in segs]
('int16', 0, True, ['h#', 's', 'iy', 'h#'])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

SAMPLE_RATE = 16000
HOP = 80  # 5 ms parameter frames
WIN = 400
NFFT = 512
_FREQS = np.arange(NFFT // 2 + 1) * SAMPLE_RATE / NFFT


class Spec(NamedTuple):
    """Acoustic targets of one phone (adult male reference frequencies)."""

    dur: float  # mean duration, ms
    av: float  # voicing amplitude
    an: float  # noise amplitude
    f_start: tuple[float, float, float]  # F1-F3 at onset, Hz
    f_end: tuple[float, float, float] | None = None  # F1-F3 at offset (diphthongs)
    band: tuple[float, float] = (4000.0, 3000.0)  # frication noise centre, width (Hz)
    asp: float = 0.0  # share of noise shaped by the formants (aspiration) vs. the band
    anti: float = 0.0  # nasal antiformant, Hz (0: none)
    burst: bool = False  # noise amplitude decays from a sharp onset
    bw: float = 1.0  # formant bandwidth scale


NEUTRAL = (500.0, 1500.0, 2500.0)
LAB, ALV, VEL = (250.0, 900.0, 2200.0), (250.0, 1750.0, 2700.0), (250.0, 2100.0, 2500.0)
PAL = (300.0, 1900.0, 2500.0)
VBAR = (200.0, 2600.0, 3600.0)  # voice bar of voiced closures: low murmur only


def _v(dur: float, f: tuple, f_end: tuple | None = None, av: float = 1.0) -> Spec:
    return Spec(dur, av, 0.0, f, f_end)


PHONE_SPECS: dict[str, Spec] = {
    # vowels (Peterson & Barney style targets)
    "iy": _v(110, (280, 2250, 2950)), "ih": _v(85, (400, 1950, 2550)),
    "eh": _v(95, (540, 1800, 2500)), "ae": _v(130, (680, 1700, 2400)),
    "ah": _v(90, (640, 1200, 2400)), "aa": _v(120, (740, 1100, 2450)),
    "ao": _v(120, (580, 850, 2400)), "uh": _v(80, (450, 1030, 2250)),
    "uw": _v(110, (310, 870, 2250)), "ux": _v(100, (330, 1650, 2250)),
    "er": _v(120, (490, 1350, 1650)), "axr": _v(75, (470, 1400, 1750), av=0.7),
    "ax": _v(50, (500, 1500, 2500), av=0.6), "ix": _v(50, (420, 1850, 2550), av=0.6),
    "ax-h": Spec(35, 0.1, 0.12, (500, 1500, 2500), asp=1.0),
    "ey": _v(130, (480, 1900, 2550), (330, 2250, 2850)),
    "ay": _v(150, (720, 1150, 2450), (420, 2000, 2600)),
    "aw": _v(150, (720, 1200, 2450), (450, 950, 2300)),
    "oy": _v(150, (550, 850, 2400), (400, 1950, 2550)),
    "ow": _v(130, (540, 1000, 2400), (420, 850, 2300)),
    # glides and liquids
    "l": _v(55, (360, 1000, 2700), av=0.55), "el": _v(90, (450, 950, 2650), av=0.6),
    "r": _v(55, (420, 1200, 1550), av=0.55), "w": _v(50, (320, 700, 2200), av=0.5),
    "y": _v(50, (280, 2200, 2950), av=0.5),
    "hh": Spec(60, 0.0, 0.12, NEUTRAL, asp=1.0), "hv": Spec(55, 0.2, 0.1, NEUTRAL, asp=1.0),
    # nasals: low murmur with an antiformant by place
    "m": Spec(60, 0.35, 0.0, (250, 1000, 2200), anti=800, bw=1.8),
    "n": Spec(55, 0.35, 0.0, (250, 1500, 2600), anti=1700, bw=1.8),
    "ng": Spec(60, 0.35, 0.0, (250, 2000, 2600), anti=3000, bw=1.8),
    "em": Spec(90, 0.4, 0.0, (250, 1000, 2200), anti=800, bw=1.8),
    "en": Spec(90, 0.4, 0.0, (250, 1500, 2600), anti=1700, bw=1.8),
    "eng": Spec(90, 0.4, 0.0, (250, 2000, 2600), anti=3000, bw=1.8),
    "nx": Spec(30, 0.3, 0.0, (250, 1500, 2600), anti=1700, bw=1.8),
    # fricatives: band noise by place, voiced ones add voicing
    "s": Spec(105, 0.0, 0.35, ALV, band=(5500, 1300)),
    "z": Spec(80, 0.15, 0.25, ALV, band=(5300, 1300)),
    "sh": Spec(110, 0.0, 0.4, PAL, band=(3000, 900)),
    "zh": Spec(75, 0.15, 0.3, PAL, band=(2900, 900)),
    "f": Spec(95, 0.0, 0.07, LAB, band=(5000, 3500)),
    "v": Spec(55, 0.2, 0.05, LAB, band=(4500, 3500)),
    "th": Spec(90, 0.0, 0.06, (300, 1400, 2600), band=(6000, 2500)),
    "dh": Spec(40, 0.25, 0.04, (300, 1400, 2600), band=(5500, 2500)),
    # stop releases: burst spectrum by place; voiceless ones add aspiration
    "b": Spec(15, 0.1, 0.2, LAB, band=(1000, 1000), burst=True),
    "d": Spec(18, 0.1, 0.25, ALV, band=(4500, 1400), burst=True),
    "g": Spec(25, 0.1, 0.25, VEL, band=(2200, 450), burst=True),
    "p": Spec(45, 0.0, 0.2, LAB, band=(1000, 1000), asp=0.5, burst=True),
    "t": Spec(50, 0.0, 0.25, ALV, band=(4500, 1400), asp=0.4, burst=True),
    "k": Spec(55, 0.0, 0.25, VEL, band=(2200, 450), asp=0.4, burst=True),
    "ch": Spec(75, 0.0, 0.4, PAL, band=(3200, 1000), burst=True),
    "jh": Spec(60, 0.15, 0.3, PAL, band=(3000, 1000), burst=True),
    "dx": Spec(25, 0.3, 0.0, (350, 1650, 2600), bw=1.5),
    # closures and silences
    "bcl": Spec(60, 0.06, 0.0, VBAR), "dcl": Spec(50, 0.06, 0.0, VBAR),
    "gcl": Spec(55, 0.06, 0.0, VBAR), "pcl": Spec(70, 0.0, 0.0, LAB),
    "tcl": Spec(60, 0.0, 0.0, ALV), "kcl": Spec(65, 0.0, 0.0, VEL),
    "q": Spec(35, 0.12, 0.0, NEUTRAL, bw=2.0), "epi": Spec(25, 0.0, 0.0, NEUTRAL),
    "pau": Spec(150, 0.0, 0.0, NEUTRAL), "h#": Spec(200, 0.0, 0.0, NEUTRAL),
}  # fmt: skip


@dataclass(frozen=True)
class Voice:
    """A speaker: pitch, vocal tract length scaling, rate, level and noise floor.

    >>> v = Voice.random(np.random.default_rng(1), "m")
    >>> 80 < v.f0 < 160 and 0.85 < v.alpha < 1.1
    True
    """

    f0: float  # mean pitch, Hz
    alpha: float  # formant scaling (shorter vocal tract: larger)
    rate: float  # speaking rate (durations divided by it)
    level_db: float  # speech level relative to nominal
    snr_db: float  # speech-to-background ratio
    tilt: float  # source spectral tilt corner, Hz (smaller: darker voice)
    channel: tuple[float, ...] = ()  # smooth random channel response: cosine weights, dB

    @staticmethod
    def random(rng: np.random.Generator, gender: str) -> Voice:
        """Draw a voice of gender ``"f"`` or ``"m"``."""
        female = gender == "f"
        return Voice(
            f0=float(rng.uniform(170, 250) if female else rng.uniform(90, 150)),
            alpha=float(rng.normal(1.15, 0.06) if female else rng.normal(0.98, 0.06)),
            rate=float(rng.uniform(0.8, 1.3)),
            level_db=float(rng.uniform(-8, 8)),
            snr_db=float(rng.uniform(18, 38)),
            tilt=float(rng.uniform(150, 600)),
            channel=tuple(float(c) for c in rng.normal(0.0, 3.0, 6)),
        )


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average along axis 0 with edge padding (odd ``width``)."""
    if width <= 1:
        return x
    half = width // 2
    pad = [(half, half)] + [(0, 0)] * (x.ndim - 1)
    c = np.cumsum(np.pad(x, pad, mode="edge"), axis=0)
    c = np.concatenate([np.zeros_like(c[:1]), c], axis=0)
    return (c[width:] - c[:-width]) / width


def _durations(phones: list[str], voice: Voice, rng: np.random.Generator) -> np.ndarray:
    ms = np.array([PHONE_SPECS[p].dur for p in phones]) / voice.rate
    ms = ms * np.exp(rng.normal(0.0, 0.25, len(phones)))
    floor = np.array([8.0 if PHONE_SPECS[p].burst else 15.0 for p in phones])
    return np.maximum(np.round(np.maximum(ms, floor) * SAMPLE_RATE / 1000), 1).astype(np.int64)


def _stft_filter(x: np.ndarray, env: np.ndarray) -> np.ndarray:
    """Filter ``x`` with a per-frame magnitude response ``env [frames, bins]`` (overlap-add)."""
    n = len(x)
    win = np.hanning(WIN + 1)[:WIN]
    xp = np.pad(x, (WIN // 2, WIN // 2 + HOP))
    frames = env.shape[0]
    idx = np.arange(WIN)[None, :] + HOP * np.arange(frames)[:, None]
    spec = np.fft.rfft(xp[idx] * win, NFFT) * env
    y = np.fft.irfft(spec, NFFT)[:, :WIN] * win
    k = WIN // HOP
    out = np.zeros((frames + k, HOP))
    norm = np.zeros(k * HOP + HOP * frames)
    for j in range(k):
        out[j : j + frames] += y[:, j * HOP : (j + 1) * HOP]
    wsq = (win**2).reshape(k, HOP)
    norm = np.zeros((frames + k, HOP))
    for j in range(k):
        norm[j : j + frames] += wsq[j]
    out = (out / np.maximum(norm, 1e-3)).reshape(-1)
    return out[WIN // 2 : WIN // 2 + n]


def _resonators(formants: np.ndarray, bws: np.ndarray) -> np.ndarray:
    """Cascade resonator magnitude ``[frames, bins]`` for formants/bandwidths ``[frames, 4]``."""
    f = _FREQS[None, None, :]
    fm = formants[:, :, None]
    mag = fm**2 / np.sqrt((fm**2 - f**2) ** 2 + (f * bws[:, :, None]) ** 2)
    return np.prod(mag, axis=1)


def _unit_rms(env: np.ndarray) -> np.ndarray:
    return env / np.sqrt(np.mean(env**2, axis=1, keepdims=True) + 1e-12)


def synthesize(
    phones: list[str], voice: Voice, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    """Synthesize int16 audio at 16 kHz and its ``(start, end, phone)`` sample segments."""
    specs = [PHONE_SPECS[p] for p in phones]
    dur = _durations(phones, voice, rng)
    ends = np.cumsum(dur)
    starts = ends - dur
    n = int(ends[-1])
    segments = [(int(s), int(e), p) for s, e, p in zip(starts, ends, phones, strict=True)]
    frames = 1 + (n + HOP) // HOP
    fc = np.arange(frames) * HOP  # frame centres in samples
    seg_of_frame = np.minimum(np.searchsorted(ends, fc, side="right"), len(phones) - 1)
    pos = (fc - starts[seg_of_frame]) / dur[seg_of_frame]  # 0..1 within segment

    # per-token targets with random variation
    jit = np.exp(rng.normal(0.0, 0.09, (len(phones), 3)))
    f_on = np.array([s.f_start for s in specs]) * jit
    f_off = np.array([s.f_end or s.f_start for s in specs]) * jit
    band = np.array([s.band for s in specs]) * np.exp(rng.normal(0.0, 0.1, (len(phones), 2)))
    asp = np.array([s.asp for s in specs])
    anti = np.array([s.anti for s in specs])
    bw_scale = np.array([s.bw for s in specs])
    amp_jit = np.exp(rng.normal(0.0, 0.3, len(phones)))
    av = np.array([s.av for s in specs]) * amp_jit
    an = np.array([s.an for s in specs]) * amp_jit

    # frame-level tracks: formants glide within a segment, then blend across boundaries
    p = pos[:, None]
    formants = f_on[seg_of_frame] * (1 - p) + f_off[seg_of_frame] * p
    formants = _smooth(formants, 11) * voice.alpha
    f4 = np.full((frames, 1), 3500.0 * voice.alpha)
    formants = np.minimum(np.concatenate([formants, f4], axis=1), 7500.0)
    bws = (
        np.array([70.0, 100.0, 140.0, 250.0])[None, :] * _smooth(bw_scale[seg_of_frame], 3)[:, None]
    )
    band_t = _smooth(band[seg_of_frame], 3) * np.sqrt(voice.alpha)
    asp_t = _smooth(asp[seg_of_frame], 3)[:, None]
    anti_t = anti[seg_of_frame][:, None] * voice.alpha

    res = _resonators(formants, bws)
    glottal = 1.0 / np.sqrt(1.0 + (_FREQS[None, :] / voice.tilt) ** 2)
    zero = np.where(
        anti_t > 0,
        np.sqrt((anti_t**2 - _FREQS**2) ** 2 + (_FREQS * 250.0) ** 2) / np.maximum(anti_t, 1) ** 2,
        1.0,
    )
    env_v = _unit_rms(res * glottal * np.minimum(zero, 1.5))
    fric = np.exp(-0.5 * ((_FREQS[None, :] - band_t[:, :1]) / band_t[:, 1:]) ** 2) + 0.01
    env_n = _unit_rms(asp_t * _unit_rms(res) + (1 - asp_t) * _unit_rms(fric))

    # sample-level amplitudes: piecewise constant, bursts decay, short crossfades
    seg_idx = np.repeat(np.arange(len(phones)), dur)
    t_in = np.arange(n) - starts[seg_idx]
    burst = np.array([s.burst for s in specs])[seg_idx]
    decay = np.where(burst, 0.25 + 0.75 * np.exp(-t_in / (0.012 * SAMPLE_RATE)), 1.0)
    amp_v = _smooth(av[seg_idx], 161)
    amp_n = _smooth(an[seg_idx] * decay, 49)

    # glottal pulse train with declination and slow pitch wander
    t = np.arange(n) / SAMPLE_RATE
    wander = np.interp(t, np.linspace(0, t[-1], 8), rng.normal(0, 0.04, 8))
    f0 = voice.f0 * (1.1 - 0.2 * t / t[-1]) * np.exp(wander) * rng.uniform(0.93, 1.07)
    phase = np.cumsum(f0 / SAMPLE_RATE)
    pulses = np.diff(np.floor(phase), prepend=0.0) * np.sqrt(SAMPLE_RATE / voice.f0)

    voiced = _stft_filter(pulses, env_v) * amp_v
    noise = _stft_filter(rng.standard_normal(n), env_n) * amp_n
    speech = voiced + noise
    if voice.channel:  # a smooth per-speaker channel (microphone/room colouring)
        spec = np.fft.rfft(speech)
        fb = np.fft.rfftfreq(n, 1 / SAMPLE_RATE) / (SAMPLE_RATE / 2)
        gain_db = sum(c * np.cos(np.pi * (k + 1) * fb) for k, c in enumerate(voice.channel))
        speech = np.fft.irfft(spec * 10 ** (gain_db / 20), n)
    rms = np.sqrt(np.mean(speech[amp_v + amp_n > 0.05] ** 2) + 1e-12)
    speech = speech / rms * 0.06 * 10 ** ((voice.level_db + rng.uniform(-2, 2)) / 20)
    bg = np.fft.rfft(rng.standard_normal(n))
    fb = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    bg = np.fft.irfft(bg / (1.0 + fb / 400.0), n)
    bg = bg / np.sqrt(np.mean(bg**2)) * 0.06 * 10 ** ((voice.level_db - voice.snr_db) / 20)
    audio = np.clip(np.round((speech + bg) * 32767), -32768, 32767).astype(np.int16)
    return audio, segments
