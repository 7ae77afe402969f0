"""Label sequences for audio files (NIST SPHERE, WAV, FLAC, any rate) from a trained recogniser.

:func:`transcribe` decodes every file it can and says why it could not decode the others: one
:class:`Transcription` per file, in order, with its labels and their times or the reason it has
none (a missing or unreadable file, one that is not audio, an empty one, one too short for a
single analysis frame). Decoding goes through :class:`~recipes.toolkit.inference.Recognizer`;
:func:`write_transcription_ctm` writes the times as a CTM file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from recipes.toolkit.framewise.alignment import write_ctm
from recipes.toolkit.inference import Recognizer, TimedPhone
from recipes.toolkit.package.audio import check_long_enough, read_audio
from recipes.toolkit.recognizer import SpeechRecognizer

__all__ = [
    "Transcription",
    "check_long_enough",
    "decode_wave",
    "failure_summary",
    "features_for",
    "read_audio",
    "transcribe",
    "write_transcription_ctm",
]


@dataclass(frozen=True)
class Transcription:
    """What :func:`transcribe` made of one file: its ``labels`` and their times (``phones``),
    or the ``error`` saying why there are none (the message names the file)."""

    path: Path
    labels: list[str] | None
    error: str | None = None
    phones: list[TimedPhone] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _recognizer(model: Recognizer | SpeechRecognizer) -> Recognizer:
    return model if isinstance(model, Recognizer) else Recognizer.from_module(model)


def features_for(module: Recognizer | SpeechRecognizer, wave: torch.Tensor) -> torch.Tensor:
    """Filterbanks normalised as in training (per-utterance for speaker normalisation)."""
    return _recognizer(module).features(wave)


def decode_wave(
    module: Recognizer | SpeechRecognizer, wave: torch.Tensor, score: bool = True
) -> list[str]:
    """Labels of one waveform (from :func:`read_audio`, long enough for one frame);
    ``score``: mapped to the scoring set."""
    return [phone.phone for phone in _recognizer(module).transcribe(wave, score)]


def transcribe(
    model: Recognizer | SpeechRecognizer, paths: Sequence[Path], score: bool = True
) -> list[Transcription]:
    """Decode each file with the model's decoding options; ``score``: map to the scoring set.

    One :class:`Transcription` per path, in order: a file that cannot be read or is too short
    gets its reason instead of labels, and the other files are decoded all the same.
    """
    recognizer = _recognizer(model)
    results = []
    for path in paths:
        try:
            wave = read_audio(Path(path))
            check_long_enough(path, wave.shape[-1], recognizer.feature_settings)
        except (OSError, ValueError) as error:
            results.append(Transcription(Path(path), None, str(error)))
            continue
        phones = recognizer.transcribe(wave, score)
        results.append(Transcription(Path(path), [p.phone for p in phones], phones=phones))
    return results


def utterance_id(path: str | os.PathLike) -> str:
    """A file's CTM utterance id: its path as given, whitespace replaced by ``_``.

    >>> utterance_id("my audio/a b.wav")
    'my_audio/a_b.wav'
    """
    return "_".join(str(path).split())


def write_transcription_ctm(path: str | os.PathLike, results: Sequence[Transcription]) -> Path:
    """Write the timed phones of every transcribed file as CTM lines
    ``<utt> 1 <start> <duration> <phone>`` (utterance id: :func:`utterance_id`), atomically."""
    records = [
        (utterance_id(result.path), phone.start, phone.end - phone.start, phone.phone)
        for result in results
        if result.ok and result.phones is not None
        for phone in result.phones
    ]
    write_ctm(path, records)
    return Path(path)


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
