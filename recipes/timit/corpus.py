"""Read a TIMIT-format corpus (real LDC TIMIT or the built-in one) into validated utterances.

Splits follow the standard recipe: train = every TRAIN speaker (SI + SX), dev = the 50 dev
speakers of TEST, test = the 24 core-test speakers; SA1/SA2 are dropped. File and folder names may
be upper or lower case. Every utterance and folder is checked and all problems are reported
together, each naming its path; nothing is left out without a word (see :func:`read_timit_report`).

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
from typing import NamedTuple

import soundfile as sf

from recipes.timit.phones import PHONES_61
from recipes.timit.speakers import CORE_TEST_SPEAKERS, DEV_SPEAKERS
from recipes.toolkit.data.feature_config import SAMPLE_RATE

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
_KNOWN = frozenset(PHONES_61)
_DR = re.compile(r"^dr\d+$")  # names are compared in lower case
_SPEAKER = re.compile(r"^[fm][a-z]{3}\d$")  # e.g. fadg0, mrjm4
_UTT_FILE = re.compile(r"^(s[aix]\d+)\.(wav|phn|wrd|txt)$")  # e.g. si1279.wav
# LDC TIMIT (SA1/SA2 dropped): (utterances, speakers) per split, 8 SI/SX utterances per speaker.
STANDARD_SIZES: dict[str, tuple[int, int]] = {
    "train": (3696, 462),
    "dev": (400, 50),
    "test": (192, 24),
}
UTTS_PER_SPEAKER = 8
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


class Skipped(NamedTuple):
    """Something left out with ``skip_bad``: an utterance (its .WAV, or the partner file when
    there is no .WAV) or a folder, and why (every problem found, ``"; "``-separated)."""

    path: Path
    reason: str


@dataclass
class CorpusReport:
    """What :func:`read_timit_report` read, and everything it left out."""

    splits: dict[str, list[Utterance]]
    skipped: list[Skipped] = field(default_factory=list)  # only with skip_bad (else it raises)
    stray: list[Path] = field(default_factory=list)  # unrecognised entries, ignored (warned)
    size_problems: list[str] = field(default_factory=list)  # LDC size check, warned with skip_bad


@dataclass
class _Findings:
    """Problems found while walking the tree. ``fatal`` ones cannot be skipped."""

    problems: list[str] = field(default_factory=list)
    fatal: bool = False
    skipped: list[Skipped] = field(default_factory=list)
    bad_utts: int = 0
    stray: list[Path] = field(default_factory=list)
    sa_utts: int = 0
    unused_speakers: int = 0
    seen: dict[str, Path] = field(default_factory=dict)  # speaker -> its folder

    def fail(self, problems: list[str]) -> None:
        self.problems += problems
        self.fatal = self.fatal or bool(problems)

    def drop(self, path: Path, problems: list[str], utterance: bool = False) -> None:
        self.problems += problems
        reason = "; ".join(p.removeprefix(f"{path}: ") for p in problems)
        self.skipped.append(Skipped(path, reason))
        self.bad_utts += utterance


def _children(d: Path) -> tuple[dict[str, Path], list[str]]:
    """Entries of ``d`` by lower-case name, and problems that make ``d`` unusable: it is
    unreadable, or holds names that differ only in case."""
    try:
        entries = list(os.scandir(d))
    except OSError as e:
        return {}, [f"{d}: unreadable folder ({e})"]
    by_name: dict[str, list[str]] = {}
    for e in entries:
        by_name.setdefault(e.name.lower(), []).append(e.name)
    problems = [
        f"{d}: {' and '.join(sorted(v))} differ only in case"
        for _, v in sorted(by_name.items())
        if len(v) > 1
    ]
    return {k: d / v[0] for k, v in by_name.items()}, problems


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


def _read_words(path: Path | None, problems: list[str]) -> list[tuple[int, int, str]]:
    if path is None:
        return []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        problems.append(f"{path}: unreadable ({e})")
        return []
    words = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
            words.append((int(parts[0]), int(parts[1]), parts[2]))
    return words


def _read_text(path: Path | None, problems: list[str]) -> str:
    if path is None:
        return ""
    try:
        parts = path.read_text(errors="replace").strip().split(maxsplit=2)
    except OSError as e:
        problems.append(f"{path}: unreadable ({e})")
        return ""
    return parts[2] if len(parts) == 3 else ""


def _read_utterance(
    stem: str, files: Mapping[str, Path], speaker: str, dr: str, split: str
) -> tuple[Utterance | None, list[str]]:
    """Read one utterance from its files by extension (``files["wav"]`` must exist)."""
    problems: list[str] = []
    wav, phn = files["wav"], files.get("phn")
    num_samples = _read_audio_info(wav, problems)
    if phn is None:
        problems.append(f"{wav}: no {stem.upper()}.PHN transcription next to it")
        return None, problems
    segments = read_segments(phn, num_samples, problems)
    words = _read_words(files.get("wrd"), problems)
    text = _read_text(files.get("txt"), problems)
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
        words=words,
        text=text,
        num_samples=num_samples or 0,
    )
    return utt, problems


def _read_speaker(
    spk_dir: Path, speaker: str, dr: str, split: str, f: _Findings
) -> list[Utterance]:
    """The good SI/SX utterances of one speaker folder; everything else goes into ``f``
    (an unusable folder is skipped whole)."""
    files, found = _children(spk_dir)
    if found:
        f.drop(spk_dir, found)
        return []
    by_stem: dict[str, dict[str, Path]] = {}
    for name, path in sorted(files.items()):
        m = _UTT_FILE.match(name)
        if m is None or not path.is_file():
            f.stray.append(path)
        else:
            by_stem.setdefault(m[1], {})[m[2]] = path
    stems = [s for s in by_stem if not s.startswith("sa")]
    f.sa_utts += len(by_stem) - len(stems)
    if not stems:
        what = "no SI/SX utterances in" if files else "empty"
        f.drop(spk_dir, [f"{spk_dir}: {what} speaker folder"])
    utts = []
    for stem in stems:
        exts = by_stem[stem]
        if "wav" not in exts:
            other = exts.get("phn") or exts.get("wrd") or exts["txt"]
            f.drop(other, [f"{other}: no {stem.upper()}.WAV audio next to it"], utterance=True)
            continue
        utt, problems = _read_utterance(stem, exts, speaker, dr, split)
        if problems:
            f.drop(exts["wav"], problems, utterance=True)
        elif utt is not None:
            utts.append(utt)
    return utts


def _read_region(
    part: str, dr: str, dr_dir: Path, f: _Findings, splits: dict[str, list[Utterance]]
) -> None:
    """Read the speakers of one dialect-region folder into ``splits`` (an unusable folder is
    skipped whole)."""
    speakers, found = _children(dr_dir)
    if found:
        f.drop(dr_dir, found)
        return
    n_speakers = 0
    for speaker, spk_dir in sorted(speakers.items()):
        if not (_SPEAKER.match(speaker) and spk_dir.is_dir()):
            f.stray.append(spk_dir)
            continue
        n_speakers += 1
        split = _split_of(part, speaker)
        if split is None:
            f.unused_speakers += 1
            continue
        if speaker in f.seen:
            f.drop(spk_dir, [f"{spk_dir}: speaker {speaker} already read from {f.seen[speaker]}"])
            continue
        f.seen[speaker] = spk_dir
        splits[split] += _read_speaker(spk_dir, speaker, dr, split, f)
    if not n_speakers:
        f.drop(dr_dir, [f"{dr_dir}: no speaker folders in dialect-region folder"])


def standard_size_problems(root: Path, splits: Mapping[str, list[Utterance]]) -> list[str]:
    """How the splits differ from LDC TIMIT's sizes (:data:`STANDARD_SIZES`), one line per split,
    naming the dev/core-test speakers that are missing and the speakers short of utterances;
    empty when the sizes are the standard ones."""
    expected_speakers = {"dev": DEV_SPEAKERS, "test": CORE_TEST_SPEAKERS}
    problems = []
    for s in SPLITS:
        n_utts, n_speakers = STANDARD_SIZES[s]
        utts = splits.get(s, [])
        count: dict[str, int] = {}
        for u in utts:
            count[u.speaker] = count.get(u.speaker, 0) + 1
        if len(utts) == n_utts and len(count) == n_speakers:
            continue
        msg = (
            f"{root}: {s} split has {len(utts)} utterances and {len(count)} speakers, "
            f"LDC TIMIT has {n_utts} and {n_speakers}"
        )
        missing = sorted(expected_speakers.get(s, frozenset()) - set(count))
        if missing:
            msg += f"; missing speakers: {', '.join(missing)}"
        short = [f"{k} ({v})" for k, v in sorted(count.items()) if v != UTTS_PER_SPEAKER]
        if short:
            msg += f"; speakers without {UTTS_PER_SPEAKER} utterances: {', '.join(short)}"
        problems.append(msg)
    return problems


def read_timit_report(
    root: str | Path, skip_bad: bool = False, expect_standard_sizes: bool = False
) -> CorpusReport:
    """Read and validate a TIMIT-format corpus; the splits and everything left out.

    Every problem names its path: audio or transcription problems, a .WAV without its .PHN or a
    .PHN (or .WRD/.TXT) without its .WAV, empty or unreadable speaker folders, dialect-region
    folders without speakers, names differing only in case, a speaker read twice. They raise one
    :class:`CorpusError` listing them all, unless ``skip_bad`` is set: then the utterances and
    folders concerned are skipped, each logged with its reason and listed in ``skipped``. A
    missing TRAIN/TEST folder or an empty split raises regardless. Unrecognised files and
    folders (README, .DS_Store, ...) are ignored with a warning listing them (``stray``).

    ``expect_standard_sizes`` (set it for real LDC TIMIT, not the built-in corpus) also checks
    the split sizes against :data:`STANDARD_SIZES`: a difference is a problem naming the missing
    dev/core-test speakers, and only a warning with ``skip_bad`` (``size_problems``).
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"TIMIT root {root} does not exist or is not a folder: {ROOT_HINT}")
    f = _Findings()
    top, found = _children(root)
    f.fail(found)
    if "timit" in top and "train" not in top and top["timit"].is_dir():
        top, found = _children(top["timit"])  # LDC discs put the corpus under TIMIT/
        f.fail(found)
    splits: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
    for part in ("train", "test"):
        if part not in top or not top[part].is_dir():
            f.fail([f"{root}: no {part.upper()} folder (expected TRAIN/ and TEST/)"])
            continue
        regions, found = _children(top[part])
        f.fail(found)
        n_regions = 0
        for dr, dr_dir in sorted(regions.items()):
            if not (_DR.match(dr) and dr_dir.is_dir()):
                f.stray.append(dr_dir)
                continue
            n_regions += 1
            _read_region(part, dr, dr_dir, f, splits)
        if not n_regions and not found:
            f.fail([f"{top[part]}: no dialect-region folders (DR1..DR8)"])
    for s in SPLITS:
        if not splits[s]:
            f.fail([f"{root}: no utterances for the {s} split"])
    sizes = standard_size_problems(root, splits) if expect_standard_sizes else []

    if f.stray:
        log.warning(
            "ignored %d unrecognised file(s)/folder(s) in the TIMIT corpus at %s:\n  %s",
            len(f.stray),
            root,
            "\n  ".join(str(p) for p in f.stray),
        )
    problems = f.problems + sizes
    if problems and (f.fatal or not skip_bad):
        hint = "" if skip_bad else " (data.skip_bad=true skips bad utterances)"
        raise CorpusError(
            f"{len(problems)} problem(s) in the TIMIT corpus at {root}{hint}:\n  "
            + "\n  ".join(problems),
            problems,
        )
    if f.sa_utts or f.unused_speakers:
        log.info(
            "standard recipe: dropped %d SA1/SA2 utterance(s) and %d TEST speaker(s) outside "
            "the dev and core-test lists under %s",
            f.sa_utts,
            f.unused_speakers,
            root,
        )
    if f.skipped:
        n_dirs = len(f.skipped) - f.bad_utts
        log.warning(
            "skipped %d bad utterance(s) of %d%s under %s (data.skip_bad=true):\n  %s",
            f.bad_utts,
            f.bad_utts + sum(len(v) for v in splits.values()),
            f" and {n_dirs} unusable folder(s)" if n_dirs else "",
            root,
            "\n  ".join(f"{s.path}: {s.reason}" for s in f.skipped),
        )
    if sizes:
        log.warning(
            "the corpus at %s does not have LDC TIMIT's split sizes:\n  %s",
            root,
            "\n  ".join(sizes),
        )
    return CorpusReport(splits=splits, skipped=f.skipped, stray=f.stray, size_problems=sizes)


def read_timit(
    root: str | Path, skip_bad: bool = False, expect_standard_sizes: bool = False
) -> dict[str, list[Utterance]]:
    """Read and validate a TIMIT-format corpus into ``{"train", "dev", "test"}`` utterance lists.

    Raises :class:`CorpusError` listing every problem found, unless ``skip_bad`` is set, in which
    case bad utterances are skipped and logged; see :func:`read_timit_report`, which also returns
    what was skipped.
    """
    return read_timit_report(root, skip_bad, expect_standard_sizes).splits


def summary(splits: Mapping[str, list[Utterance]]) -> str:
    """A small table per split: utterances, speakers, hours of audio, phones (61-set, no q)."""
    rows = [f"{'split':<6} {'utterances':>10} {'speakers':>8} {'hours':>7} {'phones':>8}"]
    for name, utts in splits.items():
        hours = sum(u.num_samples for u in utts) / SAMPLE_RATE / 3600
        phones = sum(sum(1 for s in u.segments if s[2] != "q") for u in utts)
        speakers = len({u.speaker for u in utts})
        rows.append(f"{name:<6} {len(utts):>10} {speakers:>8} {hours:>7.3f} {phones:>8}")
    return "\n".join(rows)
