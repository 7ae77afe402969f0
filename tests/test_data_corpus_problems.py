"""The TIMIT reader drops nothing without a word: every problem names its path, skip_bad lists
every skipped utterance with its reason, and a corpus read as LDC TIMIT has the standard sizes."""

from __future__ import annotations

import itertools
import logging
import os
import shutil
from pathlib import Path

import pytest

from recipes.timit.corpus import (
    STANDARD_SIZES,
    CorpusError,
    Skipped,
    read_timit,
    read_timit_report,
)
from recipes.timit.speakers import CORE_TEST_LIST, DEV_LIST


@pytest.fixture
def root(tiny_corpus: Path, tmp_path: Path) -> Path:
    """A copy of the tiny corpus to break (4 train, 2 dev, 2 core-test speakers, 3 SI/SX each)."""
    return Path(shutil.copytree(tiny_corpus, tmp_path / "c"))


def _problems(root: Path, **kwargs: bool) -> list[str]:
    with pytest.raises(CorpusError) as e:
        read_timit(root, **kwargs)
    assert all(p in str(e.value) for p in e.value.problems)
    return e.value.problems


def _utterance(root: Path, part: str = "TRAIN", i: int = 0) -> Path:
    """The i-th SI/SX .WAV under ``part``."""
    return sorted(p for p in root.glob(f"{part}/*/*/S[IX]*.WAV"))[i]


def _speaker_dirs(root: Path, part: str = "TRAIN") -> list[Path]:
    return sorted(root.glob(f"{part}/DR*/*"))


def test_wav_without_phn(root):
    wav = _utterance(root)
    wav.with_suffix(".PHN").unlink()
    assert _problems(root) == [f"{wav}: no {wav.stem}.PHN transcription next to it"]


def test_phn_without_wav(root):
    wav = _utterance(root)
    wav.unlink()
    phn = wav.with_suffix(".PHN")
    assert _problems(root) == [f"{phn}: no {wav.stem}.WAV audio next to it"]


def test_words_and_text_without_wav_or_phn(root):
    wav = _utterance(root)
    wav.unlink()
    wav.with_suffix(".PHN").unlink()
    assert _problems(root) == [f"{wav.with_suffix('.WRD')}: no {wav.stem}.WAV audio next to it"]


def test_empty_speaker_folder(root):
    d = root / "TRAIN" / "DR1" / "FQQQ0"
    d.mkdir()
    assert _problems(root) == [f"{d}: empty speaker folder"]


def test_speaker_folder_with_only_sa_sentences(root):
    d = _speaker_dirs(root)[0]
    for p in d.glob("S[IX]*"):
        p.unlink()
    assert _problems(root) == [f"{d}: no SI/SX utterances in speaker folder"]


def test_unreadable_speaker_folder(root, monkeypatch):
    d = _speaker_dirs(root)[0]
    real_scandir = os.scandir

    def scandir(path):
        if Path(path) == d:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # chmod does not stop root
    assert _problems(root) == [f"{d}: unreadable folder ([Errno 13] Permission denied: '{d}')"]


def test_dialect_region_without_speakers(root):
    dr = root / "TRAIN" / "DR8"
    dr.mkdir()
    (dr / ".DS_Store").write_bytes(b"\0")  # stray: warned, and it is no speaker
    assert _problems(root) == [f"{dr}: no speaker folders in dialect-region folder"]


def test_part_without_dialect_regions(root):
    for dr in (root / "TEST").iterdir():
        shutil.rmtree(dr)
    (root / "TEST" / "README.DOC").write_text("notes\n")
    assert _problems(root) == [
        f"{root / 'TEST'}: no dialect-region folders (DR1..DR8)",
        f"{root}: no utterances for the dev split",
        f"{root}: no utterances for the test split",
    ]


def test_names_differing_only_in_case(root):
    wav = _utterance(root)
    shutil.copy(wav, wav.with_name(wav.name.lower()))
    d = wav.parent
    assert _problems(root) == [f"{d}: {wav.name} and {wav.name.lower()} differ only in case"]
    splits = read_timit(root, skip_bad=True)  # the ambiguous speaker folder is left out whole
    assert d.name.lower() not in {u.speaker for u in splits["train"]}
    assert len(splits["train"]) == 12 - 3


def test_speaker_read_twice(root):
    first = _speaker_dirs(root)[0]
    second = root / "TRAIN" / "DR8" / first.name
    shutil.copytree(first, second)
    assert _problems(root) == [f"{second}: speaker {first.name.lower()} already read from {first}"]


def test_stray_files_and_folders_warn(root, caplog):
    spk = _speaker_dirs(root)[0]
    wav = sorted(spk.glob("S[IX]*.WAV"))[0]
    stray = [
        root / "TRAIN" / "DR1" / ".DS_Store",
        root / "TRAIN" / "DR1" / "notes",
        root / "TRAIN" / "README.DOC",
        spk / f"._{wav.name}",
        spk / f"{wav.name}.bak",
    ]
    stray[1].mkdir()
    for p in stray[:1] + stray[2:]:
        p.write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="recipes"):
        report = read_timit_report(root)
    assert [len(report.splits[s]) for s in ("train", "dev", "test")] == [12, 6, 6]
    assert sorted(report.stray) == sorted(stray)
    assert report.skipped == [] and report.size_problems == []
    assert "ignored 5 unrecognised file(s)/folder(s)" in caplog.text
    assert all(str(p) in caplog.text for p in stray)


def test_skip_bad_lists_and_logs_every_skipped_utterance(root, caplog):
    nophn, orphan, bad = (_utterance(root, i=i) for i in (0, 3, 6))
    nophn.with_suffix(".PHN").unlink()
    orphan.unlink()
    bad.write_bytes(b"\0garbage" * 100)
    phn = bad.with_suffix(".PHN")
    phn.write_text(phn.read_text().replace(" h#\n", " xx\n", 1))  # and an unknown phone
    empty = root / "TRAIN" / "DR8"
    empty.mkdir()
    with caplog.at_level(logging.WARNING, logger="recipes"):
        report = read_timit_report(root, skip_bad=True)
    assert [len(report.splits[s]) for s in ("train", "dev", "test")] == [12 - 3, 6, 6]
    assert [p for p, _ in report.skipped] == [nophn, orphan.with_suffix(".PHN"), bad, empty]
    assert all(isinstance(s, Skipped) for s in report.skipped)
    reasons = dict(report.skipped)
    assert reasons[nophn] == f"no {nophn.stem}.PHN transcription next to it"
    assert reasons[orphan.with_suffix(".PHN")] == f"no {orphan.stem}.WAV audio next to it"
    assert reasons[bad].startswith("unreadable audio (")
    assert f"; {phn}:1: unknown phone symbol 'xx'" in reasons[bad]
    assert reasons[empty] == "no speaker folders in dialect-region folder"
    assert "skipped 3 bad utterance(s) of 24 and 1 unusable folder(s)" in caplog.text
    assert all(f"{p}: {r}" in caplog.text for p, r in report.skipped)
    assert read_timit(root, skip_bad=True) == report.splits


def test_builtin_sizes_are_not_checked_by_default(tiny_corpus):
    report = read_timit_report(tiny_corpus)
    assert report.size_problems == [] and report.skipped == [] and report.stray == []


def test_ldc_size_check_names_missing_speakers(tiny_corpus):
    problems = _problems(tiny_corpus, expect_standard_sizes=True)
    assert len(problems) == 3
    train, dev, test = problems
    assert train.startswith(
        f"{tiny_corpus}: train split has 12 utterances and 4 speakers, LDC TIMIT has 3696 and 462;"
    )
    assert dev.startswith(
        f"{tiny_corpus}: dev split has 6 utterances and 2 speakers, LDC TIMIT has 400 and 50;"
    )
    assert test.startswith(
        f"{tiny_corpus}: test split has 6 utterances and 2 speakers, LDC TIMIT has 192 and 24;"
    )
    present = {u.speaker for s in ("dev", "test") for u in read_timit(tiny_corpus)[s]}
    missing_dev = dev.split("; missing speakers: ")[1].split(";")[0].split(", ")
    missing_test = test.split("; missing speakers: ")[1].split(";")[0].split(", ")
    assert missing_dev == sorted(set(DEV_LIST) - present) and len(missing_dev) == 48
    assert missing_test == sorted(set(CORE_TEST_LIST) - present) and len(missing_test) == 22
    assert "missing speakers" not in train  # train speakers have no standard list
    assert all("speakers without 8 utterances: " in p and " (3)" in p for p in problems)


def test_ldc_size_check_is_a_warning_with_skip_bad(tiny_corpus, caplog):
    with caplog.at_level(logging.WARNING, logger="recipes"):
        report = read_timit_report(tiny_corpus, skip_bad=True, expect_standard_sizes=True)
    assert [len(report.splits[s]) for s in ("train", "dev", "test")] == [12, 6, 6]
    assert len(report.size_problems) == 3 and report.skipped == []
    assert "does not have LDC TIMIT's split sizes" in caplog.text
    assert "dev split has 6 utterances and 2 speakers, LDC TIMIT has 400 and 50" in caplog.text
    assert all(p in caplog.text for p in report.size_problems)


def _standard_tree(tiny_corpus: Path, root: Path) -> None:
    """LDC TIMIT's layout and sizes (SA left out) from hard links to the tiny corpus's files:
    462 train speakers, the 50 dev and 24 core-test ones, 8 SI/SX utterances each."""
    sources = sorted(p.with_suffix("") for p in tiny_corpus.glob("TRAIN/*/*/S[IX]*.WAV"))[:3]
    names = [f"SX{n}" for n in range(1, 6)] + [f"SI{n}" for n in range(1, 4)]
    letters = itertools.product("abcdefghijklmnopqrstuvwxyz", repeat=3)
    train = [f"{'fm'[i % 2]}{''.join(next(letters))}9" for i in range(STANDARD_SIZES["train"][1])]
    speakers = [("TRAIN", s) for s in train] + [("TEST", s) for s in DEV_LIST + CORE_TEST_LIST]
    for i, (part, speaker) in enumerate(speakers):
        d = root / part / f"DR{i % 8 + 1}" / speaker.upper()
        d.mkdir(parents=True)
        for j, name in enumerate(names):
            for ext in (".WAV", ".PHN"):
                os.link(sources[j % 3].with_suffix(ext), d / f"{name}{ext}")


@pytest.mark.slow  # reads 4288 utterances twice: about 4 s
def test_ldc_size_check_passes_on_standard_sizes_and_names_a_short_speaker(tiny_corpus, tmp_path):
    root = tmp_path / "ldc"
    _standard_tree(tiny_corpus, root)
    report = read_timit_report(root, expect_standard_sizes=True)
    assert report.size_problems == [] and report.skipped == [] and report.stray == []
    sizes = {s: (len(u), len({x.speaker for x in u})) for s, u in report.splits.items()}
    assert sizes == STANDARD_SIZES
    shutil.rmtree(next(root.glob("TEST/*/FADG0")))
    for p in next(root.glob("TEST/*/MWEW0")).glob("SX1.*"):
        p.unlink()
    assert _problems(root, expect_standard_sizes=True) == [
        f"{root}: dev split has 392 utterances and 49 speakers, LDC TIMIT has 400 and 50; "
        "missing speakers: fadg0",
        f"{root}: test split has 191 utterances and 24 speakers, LDC TIMIT has 192 and 24; "
        "speakers without 8 utterances: mwew0 (7)",
    ]
