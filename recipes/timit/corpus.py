"""Read a TIMIT-format corpus (real LDC TIMIT or the built-in one) into validated utterances.

Splits follow the standard recipe: train = every TRAIN speaker (SI + SX), dev = the 50 dev
speakers of TEST, test = the 24 core-test speakers; SA1/SA2 are dropped. File and folder names may
be upper or lower case. Every utterance is checked and all problems are reported together.

>>> Utterance("fadg0_si1279", "fadg0", "dr4", "dev", Path("a.wav"), Path("a.phn"),
...           [(0, 10, "h#"), (10, 20, "aa")], num_samples=20).phones
['h#', 'aa']
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from recipes.timit.phones import PHONES_61
from recipes.timit.speakers import CORE_TEST_SPEAKERS, DEV_SPEAKERS
from recipes.toolkit.data.features import SAMPLE_RATE

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
_KNOWN = frozenset(PHONES_61)
_DR = re.compile(r"^dr\d+$", re.IGNORECASE)
ROOT_HINT = (
    "point at a real TIMIT copy with `data=timit data.root=/path/to/TIMIT`, "
    "or use the built-in generated corpus with `data=builtin`"
)


class CorpusError(ValueError):
    """A corpus that cannot be used; ``problems`` lists every problem found."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = problems or [message]
        super().__init__(message)


@dataclass
class Utterance:
    """One TIMIT utterance; ``segments`` are ``(start, end, phone)`` in samples, 61-phone set."""

    utt_id: str  # "<speaker>_<utt>", lower case, e.g. "fadg0_si1279"
    speaker: str
    dialect_region: str  # "dr1".."dr8"
    split: str  # train | dev | test
    wav: Path
    phn: Path
    segments: list[tuple[int, int, str]]
    words: list[tuple[int, int, str]] = field(default_factory=list)
    text: str = ""
    num_samples: int = 0

    @property
    def phones(self) -> list[str]:
        """The 61-set phone symbols in order (``q`` included)."""
        return [s[2] for s in self.segments]

    @property
    def source_files(self) -> tuple[Path, Path]:
        """The files the cached features depend on (part of the feature-cache key)."""
        return (self.wav, self.phn)


def _children(d: Path) -> dict[str, Path]:
    """Entries of ``d`` by lower-case name."""
    try:
        return {e.name.lower(): Path(e.path) for e in os.scandir(d)}
    except OSError:
        return {}


def _split_of(part: str, speaker: str) -> str | None:
    if part == "train":
        return "train"
    if speaker in DEV_SPEAKERS:
        return "dev"
    if speaker in CORE_TEST_SPEAKERS:
        return "test"
    return None  # the other TEST speakers are not used


def _sphere_problem(path: Path) -> str | None:
    """Check a NIST SPHERE header against the file size (truncation)."""
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if not head.startswith(b"NIST_1A"):
        return None
    try:
        size = int(head.split(b"\n")[1])
        fields = {}
        for line in head[:size].split(b"\n")[2:]:
            parts = line.split()
            if len(parts) >= 3:
                fields[parts[0].decode()] = parts[2].decode()
        expected = (
            int(fields["sample_count"])
            * int(fields.get("sample_n_bytes", 2))
            * int(fields.get("channel_count", 1))
        )
    except (ValueError, KeyError, IndexError, UnicodeDecodeError):
        return f"{path}: unreadable NIST SPHERE header"
    if fields.get("sample_coding", "pcm").startswith("pcm") is False:
        return None
    actual = path.stat().st_size - size
    if actual < expected:
        return f"{path}: truncated SPHERE file ({actual} of {expected} data bytes)"
    return None


def _read_audio_info(path: Path, problems: list[str]) -> int | None:
    """Number of samples, or None (problems appended)."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError, OSError) as e:
        problems.append(f"{path}: unreadable audio ({e})")
        return None
    bad = _sphere_problem(path)
    if bad:
        problems.append(bad)
        return None
    if info.samplerate != SAMPLE_RATE:
        problems.append(f"{path}: sample rate {info.samplerate} Hz, expected {SAMPLE_RATE}")
        return None
    if info.channels != 1:
        problems.append(f"{path}: {info.channels} channels, expected 1")
        return None
    if info.frames == 0:
        problems.append(f"{path}: empty utterance (no audio)")
        return None
    return int(info.frames)


def read_segments(
    path: Path, num_samples: int | None, problems: list[str]
) -> list[tuple[int, int, str]]:
    """Parse and check a ``.PHN`` file; problems name the file and line."""
    segments: list[tuple[int, int, str]] = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        problems.append(f"{path}: unreadable ({e})")
        return []
    prev_end = 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"{path}:{n}"
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            problems.append(
                f"{where}: malformed line {line.strip()!r} (expected 'start end phone')"
            )
            continue
        start, end, phone = int(parts[0]), int(parts[1]), parts[2].lower()
        if phone not in _KNOWN:
            problems.append(f"{where}: unknown phone symbol {parts[2]!r}")
        if end <= start:
            problems.append(f"{where}: segment end {end} is not after its start {start}")
        elif start < prev_end:
            problems.append(
                f"{where}: segment starts at {start} before the previous one ends at {prev_end} "
                "(unsorted or overlapping)"
            )
        if num_samples is not None and end > num_samples:
            problems.append(f"{where}: segment ends at {end}, past the audio end ({num_samples})")
        segments.append((start, end, phone))
        prev_end = max(prev_end, end)
    if not segments:
        problems.append(f"{path}: empty utterance (no phone segments)")
    return segments


def _read_words(path: Path | None) -> list[tuple[int, int, str]]:
    if path is None:
        return []
    words = []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
            words.append((int(parts[0]), int(parts[1]), parts[2]))
    return words


def _read_text(path: Path | None) -> str:
    if path is None:
        return ""
    parts = path.read_text(errors="replace").strip().split(maxsplit=2)
    return parts[2] if len(parts) == 3 else ""


def _read_utterance(
    wav: Path, files: Mapping[str, Path], speaker: str, dr: str, split: str
) -> tuple[Utterance | None, list[str]]:
    problems: list[str] = []
    stem = wav.name.rsplit(".", 1)[0].lower()
    phn = files.get(f"{stem}.phn")
    num_samples = _read_audio_info(wav, problems)
    if phn is None:
        problems.append(f"{wav}: no {stem.upper()}.PHN transcription next to it")
        return None, problems
    segments = read_segments(phn, num_samples, problems)
    if problems:
        return None, problems
    utt = Utterance(
        utt_id=f"{speaker}_{stem}",
        speaker=speaker,
        dialect_region=dr,
        split=split,
        wav=wav,
        phn=phn,
        segments=segments,
        words=_read_words(files.get(f"{stem}.wrd")),
        text=_read_text(files.get(f"{stem}.txt")),
        num_samples=num_samples or 0,
    )
    return utt, problems


def read_timit(root: str | Path, skip_bad: bool = False) -> dict[str, list[Utterance]]:
    """Read and validate a TIMIT-format corpus into ``{"train", "dev", "test"}`` utterance lists.

    Raises :class:`CorpusError` listing every problem found, unless ``skip_bad`` is set, in which
    case bad utterances are skipped and their number is logged.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"TIMIT root {root} does not exist or is not a folder: {ROOT_HINT}")
    top = _children(root)
    if "timit" in top and "train" not in top and top["timit"].is_dir():
        top = _children(top["timit"])  # LDC discs put the corpus under TIMIT/
    problems: list[str] = []
    splits: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
    bad_utts = 0
    for part in ("train", "test"):
        if part not in top or not top[part].is_dir():
            problems.append(f"{root}: no {part.upper()} folder (expected TRAIN/ and TEST/)")
            continue
        for dr_name, dr_dir in sorted(_children(top[part]).items()):
            if not _DR.match(dr_name) or not dr_dir.is_dir():
                continue
            for speaker, spk_dir in sorted(_children(dr_dir).items()):
                split = _split_of(part, speaker)
                if split is None or not spk_dir.is_dir():
                    continue
                files = _children(spk_dir)
                for name, path in sorted(files.items()):
                    if not name.endswith(".wav") or name.startswith("sa"):
                        continue
                    utt, found = _read_utterance(path, files, speaker, dr_name, split)
                    if found:
                        problems += found
                        bad_utts += 1
                    elif utt is not None:
                        splits[split].append(utt)
    for s in SPLITS:
        if not splits[s] and not problems:
            problems.append(f"{root}: no utterances for the {s} split")
    if problems and not (skip_bad and bad_utts and all(splits.values())):
        raise CorpusError(
            f"{len(problems)} problem(s) in the TIMIT corpus at {root} "
            f"(data.skip_bad=true skips bad utterances):\n  " + "\n  ".join(problems),
            problems,
        )
    if bad_utts:
        log.warning(
            "skipped %d bad utterance(s) of %d under %s (%d problem(s); first: %s)",
            bad_utts,
            bad_utts + sum(len(v) for v in splits.values()),
            root,
            len(problems),
            problems[0],
        )
    return splits


def summary(splits: Mapping[str, list[Utterance]]) -> str:
    """A small table per split: utterances, speakers, hours of audio, phones (61-set, no q)."""
    rows = [f"{'split':<6} {'utterances':>10} {'speakers':>8} {'hours':>7} {'phones':>8}"]
    for name, utts in splits.items():
        hours = sum(u.num_samples for u in utts) / SAMPLE_RATE / 3600
        phones = sum(sum(1 for s in u.segments if s[2] != "q") for u in utts)
        speakers = len({u.speaker for u in utts})
        rows.append(f"{name:<6} {len(utts):>10} {speakers:>8} {hours:>7.3f} {phones:>8}")
    return "\n".join(rows)
