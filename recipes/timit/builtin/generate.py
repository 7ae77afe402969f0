"""Generate the built-in corpus: synthetic speech in exactly the TIMIT layout and file formats.

``TRAIN|TEST/DR<n>/<SPEAKER>/<UTT>.WAV|.PHN|.WRD|.TXT`` with NIST SPHERE 16 kHz 16-bit audio,
SA1/SA2 + SX + SI sentences per speaker, 61-phone ``.PHN`` transcriptions (h# at both ends,
closures before stops). TEST speakers carry ids from the standard dev and core-test lists; train
speakers get made-up ids. The corpus is written once, atomically, and reused while its parameters
match; a root generated with other parameters is refused, not overwritten (see
:func:`ensure_builtin_corpus`).

>>> p = GeneratorParams(num_train_speakers=2, num_dev_speakers=1, num_test_speakers=1)
>>> [s.speaker for s in plan_speakers(p)]
['fnxz0', 'mohu0', 'fadg0', 'fdhc0']
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import multiprocessing
import os
import re
import shutil
import string
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from recipes.timit.builtin.lexicon import LEXICON, VOWEL_INITIAL, expand, make_sentence
from recipes.timit.builtin.synth import SAMPLE_RATE, Voice, synthesize
from recipes.timit.speakers import CORE_TEST_LIST, DEV_LIST
from recipes.toolkit.run.atomic import atomic_write_text, fsync_dir, fsync_tree

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
MARKER = "BUILTIN_TIMIT.json"
SA_SENTENCES = {
    "sa1": "she had your dark suit in greasy wash water all year",
    "sa2": "dont ask me to carry an oily rag like that",
}
_SA_EXTRA = {
    "had": "hv ae d", "your": "y axr", "dont": "d ow n", "ask": "ae s k", "me": "m iy",
    "to": "t ax", "carry": "k ae r iy", "an": "ae n", "wash": "w aa sh", "like": "l ay k",
}  # fmt: skip
STOP_RELEASES = {"b", "d", "g", "p", "t", "k"}


@dataclass(frozen=True)
class GeneratorParams:
    """Size and seed of the built-in corpus (the marker file records them)."""

    seed: int = 0
    num_train_speakers: int = 32
    num_dev_speakers: int = 10
    num_test_speakers: int = 8
    sentences_per_speaker: int = 8  # SX + SI, as TIMIT's 5 + 3; SA1/SA2 come on top

    def __post_init__(self) -> None:
        if self.num_dev_speakers > len(DEV_LIST) or self.num_test_speakers > len(CORE_TEST_LIST):
            raise ValueError("at most 50 dev and 24 core-test speakers exist")
        if min(self.num_train_speakers, self.num_dev_speakers, self.num_test_speakers) < 1:
            raise ValueError("every split needs at least one speaker")
        if self.sentences_per_speaker < 1:
            raise ValueError("sentences_per_speaker must be >= 1")


@dataclass(frozen=True)
class SpeakerPlan:
    """Who a generated speaker is and where it goes."""

    speaker: str  # lower case, e.g. "fadg0"
    part: str  # "TRAIN" or "TEST"
    dialect: int  # 1..8
    index: int  # global index (seeds the voice)


def _interleave_genders(ids: list[str]) -> list[str]:
    f, m = [s for s in ids if s[0] == "f"], [s for s in ids if s[0] == "m"]
    out = []
    for i in range(max(len(f), len(m))):
        out += ([f[i]] if i < len(f) else []) + ([m[i]] if i < len(m) else [])
    return out


def plan_speakers(p: GeneratorParams) -> list[SpeakerPlan]:
    """Speaker ids and dialect regions of the corpus, deterministic for ``p``."""
    rng = np.random.default_rng([p.seed, 1])
    taken = set(DEV_LIST) | set(CORE_TEST_LIST)
    plans = []
    for i in range(p.num_train_speakers):
        while True:
            letters = "".join(rng.choice(list(string.ascii_lowercase), 3))
            sid = f"{'fm'[i % 2]}{letters}0"
            if sid not in taken:
                break
        taken.add(sid)
        plans.append(SpeakerPlan(sid, "TRAIN", i % 8 + 1, len(plans)))
    test_ids = _interleave_genders(DEV_LIST)[: p.num_dev_speakers]
    test_ids += _interleave_genders(CORE_TEST_LIST)[: p.num_test_speakers]
    for j, sid in enumerate(test_ids):
        plans.append(SpeakerPlan(sid, "TEST", j % 8 + 1, len(plans)))
    return plans


def _sentence_plan(p: GeneratorParams, plans: list[SpeakerPlan]) -> dict[str, list[tuple]]:
    """Per speaker: (utterance name, words). SX sentences are shared by about 7 speakers within
    TRAIN or within TEST (never across); SI sentences are unique."""
    n_sx = max(1, round(p.sentences_per_speaker * 5 / 8)) if p.sentences_per_speaker > 1 else 1
    n_si = p.sentences_per_speaker - n_sx
    out: dict[str, list[tuple]] = {}
    sx_base = 3
    for part in ("TRAIN", "TEST"):
        group = [s for s in plans if s.part == part]
        pool = max(n_sx, -(-len(group) * n_sx // 7))
        sx = [make_sentence(np.random.default_rng([p.seed, 2, sx_base + k])) for k in range(pool)]
        for g, spk in enumerate(group):
            utts = [(name, words.split()) for name, words in SA_SENTENCES.items()]
            for j in range(n_sx):
                k = (g * n_sx + j) % pool
                utts.append((f"sx{sx_base + k}", sx[k]))
            for j in range(n_si):
                num = 453 + spk.index * n_si + j
                utts.append((f"si{num}", make_sentence(np.random.default_rng([p.seed, 3, num]))))
            out[spk.speaker] = utts
        sx_base += pool
    return out


def realize(words: list[str], rng: np.random.Generator) -> list[tuple[str, int]]:
    """Phones (61-set) of a sentence with the word index of each (-1 outside words): h# at both
    ends, optional pauses, glottal stops before vowel-initial words, unreleased final stops."""
    out: list[tuple[str, int]] = [("h#", -1)]
    for w, word in enumerate(words):
        if w > 0 and rng.random() < 0.08:
            out.append(("pau", -1))
        phones = expand(LEXICON.get(word) or _SA_EXTRA[word])
        if word in VOWEL_INITIAL and rng.random() < 0.3:
            phones = ["q"] + phones
        if len(phones) > 2 and phones[-1] in STOP_RELEASES and rng.random() < 0.25:
            phones = phones[:-1]
        if out[-1][0] in ("s", "sh", "f", "z") and phones[0].endswith("cl") and rng.random() < 0.3:
            out.append(("epi", -1))
        out += [(ph, w) for ph in phones]
    out.append(("h#", -1))
    return out


def _write_speaker(args: tuple[GeneratorParams, SpeakerPlan, list[tuple], Path]) -> int:
    p, spk, utts, root = args
    gender = spk.speaker[0]
    voice = Voice.random(np.random.default_rng([p.seed, 4, spk.index]), gender)
    d = root / spk.part / f"DR{spk.dialect}" / spk.speaker.upper()
    d.mkdir(parents=True, exist_ok=True)
    for u, (name, words) in enumerate(utts):
        rng = np.random.default_rng([p.seed, 5, spk.index, u])
        tokens = realize(words, rng)
        audio, segs = synthesize([t[0] for t in tokens], voice, rng)
        stem = d / name.upper()
        sf.write(f"{stem}.WAV", audio, SAMPLE_RATE, format="NIST", subtype="PCM_16")
        (stem.with_suffix(".PHN")).write_text("".join(f"{s} {e} {ph}\n" for s, e, ph in segs))
        wrd = []
        for w, word in enumerate(words):
            idx = [i for i, t in enumerate(tokens) if t[1] == w]
            wrd.append(f"{segs[idx[0]][0]} {segs[idx[-1]][1]} {word}\n")
        (stem.with_suffix(".WRD")).write_text("".join(wrd))
        text = " ".join(words).capitalize().replace("dont", "don't") + "."
        (stem.with_suffix(".TXT")).write_text(f"0 {len(audio)} {text}\n")
    return len(utts)


def generate_corpus(root: Path, params: GeneratorParams, num_workers: int = 1) -> int:
    """Write the corpus under ``root`` (not atomically; see :func:`ensure_builtin_corpus`).
    Returns the number of utterances written, SA included."""
    plans = plan_speakers(params)
    sentences = _sentence_plan(params, plans)
    jobs = [(params, s, sentences[s.speaker], root) for s in plans]
    if num_workers > 1:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ctx.Pool(num_workers) as pool:
            return sum(pool.map(_write_speaker, jobs, chunksize=1))
    return sum(_write_speaker(j) for j in jobs)


class CorpusSettingsMismatch(RuntimeError):
    """The root holds a built-in corpus generated with other settings than the requested ones."""


def _marker_content(params: GeneratorParams) -> dict:
    return {"generator_version": GENERATOR_VERSION, "params": asdict(params)}


def _recorded_settings(root: Path) -> dict | None:
    """The settings in ``root``'s marker file; None without one."""
    marker = root / MARKER
    if not marker.is_file():
        return None
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError) as err:
        recorded = f"unreadable ({err})"
    if not isinstance(recorded, dict) or not isinstance(recorded.get("params"), dict):
        raise CorpusSettingsMismatch(
            f"{marker} is not a settings record: {recorded!r:.200}; the settings of the corpus at "
            f"{root} are unknown: delete {root} to generate it again, or use another data.root"
        )
    return recorded


def _check_settings(root: Path, recorded: dict, requested: dict) -> None:
    """Raise :class:`CorpusSettingsMismatch` unless ``recorded == requested``."""
    if recorded == requested:
        return
    rec = {"generator_version": recorded.get("generator_version"), **recorded["params"]}
    req = {"generator_version": requested["generator_version"], **requested["params"]}
    differ = sorted(k for k in rec.keys() | req.keys() if rec.get(k) != req.get(k))
    raise CorpusSettingsMismatch(
        f"the built-in corpus at {root} was generated with other settings "
        f"(different {', '.join(differ)}):\n"
        f"  recorded:  {json.dumps(recorded, sort_keys=True)}\n"
        f"  requested: {json.dumps(requested, sort_keys=True)}\n"
        f"use another data.root for these settings, or delete {root} to generate it again"
    )


def _remove_stale_temporaries(root: Path) -> None:
    """Remove the partial folders an interrupted generation left beside ``root``
    (``.<name>.tmp-<pid>-<hex>``; ``.<name>.old-<hex>`` of earlier versions). The caller holds the
    lock every generation holds, so none of them is being written."""
    pattern = re.compile(re.escape(f".{root.name}.") + r"(tmp-\d+-|old-)[0-9a-f]{8}")
    for stale in sorted(p for p in root.parent.iterdir() if pattern.fullmatch(p.name)):
        log.warning("removing %s, left by an interrupted corpus generation", stale)
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_builtin_corpus(root: Path, num_workers: int = 1, **params: int) -> Path:
    """Return ``root`` holding a complete built-in corpus for ``params``, generating it if needed.

    Generation writes into a temporary sibling folder, fsyncs it, adds the marker file (the
    settings) last, then renames the folder into place, so an interrupted run never leaves a corpus
    that looks complete; the next run removes what it left. A root whose marker records other
    settings raises :class:`CorpusSettingsMismatch`; a folder at ``root`` without the marker that
    is not empty is refused too (neither is ours to replace).
    """
    root = Path(root)
    p = GeneratorParams(**params)
    wanted = _marker_content(p)
    with _file_lock(root.parent / f".{root.name}.lock"):
        _remove_stale_temporaries(root)
        recorded = _recorded_settings(root) if root.is_dir() else None
        if recorded is not None:
            _check_settings(root, recorded, wanted)
            log.info("reusing built-in TIMIT corpus at %s (%s)", root, asdict(p))
            return root
        if root.exists() and any(root.iterdir()):
            raise RuntimeError(
                f"{root} exists, is not empty and has no {MARKER}: not a built-in corpus; "
                "remove it or point data.root elsewhere"
            )
        tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        log.info("generating built-in TIMIT corpus at %s (%s)", root, asdict(p))
        t0 = time.perf_counter()
        try:
            n = generate_corpus(tmp, p, num_workers)
            fsync_tree(tmp)
            atomic_write_text(tmp / MARKER, json.dumps(wanted, indent=1) + "\n")
            if root.exists():  # an empty folder
                root.rmdir()
            os.rename(tmp, root)
            fsync_dir(root.parent)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        log.info("generated %d utterances in %.1f s", n, time.perf_counter() - t0)
    return root
