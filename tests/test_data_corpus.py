"""The TIMIT reader: splits, case-insensitivity, validation of every utterance."""

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from recipes.timit.corpus import CorpusError, read_timit, summary
from recipes.timit.speakers import CORE_TEST_SPEAKERS, DEV_SPEAKERS


def _lowercase_tree(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.rename(os.path.join(dirpath, name), os.path.join(dirpath, name.lower()))


def test_splits_and_speakers(tiny_corpus):
    splits = read_timit(tiny_corpus)
    assert set(splits) == {"train", "dev", "test"}
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [12, 6, 6]
    assert all(u.speaker in DEV_SPEAKERS for u in splits["dev"])
    assert all(u.speaker in CORE_TEST_SPEAKERS for u in splits["test"])
    assert len({u.speaker for u in splits["train"]}) == 4
    for utts in splits.values():
        for u in utts:
            assert not u.utt_id.split("_")[1].startswith("sa")  # SA1/SA2 dropped
            assert u.utt_id == f"{u.speaker}_{u.wav.stem.lower()}"
            assert u.segments[0][2] == "h#" and u.segments[-1][1] <= u.num_samples
            assert u.words and u.text
            assert u.dialect_region.startswith("dr")
    table = summary(splits)
    assert "train" in table and " 12 " in table and "hours" in table


def test_lower_case_tree_reads_the_same(tiny_corpus, tmp_path):
    root = tmp_path / "timit"
    shutil.copytree(tiny_corpus, root)
    _lowercase_tree(root)
    assert (root / "train").is_dir()
    upper, lower = read_timit(tiny_corpus), read_timit(root)
    for s in upper:
        assert [u.utt_id for u in upper[s]] == [u.utt_id for u in lower[s]]
        assert [u.segments for u in upper[s]] == [u.segments for u in lower[s]]


def test_missing_root_says_how_to_fix(tmp_path):
    with pytest.raises(CorpusError) as e:
        read_timit(tmp_path / "nowhere")
    assert "data=timit data.root=/path/to/TIMIT" in str(e.value) and "data=builtin" in str(e.value)


def _edit_line(phn: Path, lineno: int, fn) -> None:
    lines = phn.read_text().splitlines()
    lines[lineno - 1] = fn(lines[lineno - 1].split())
    phn.write_text("\n".join(lines) + "\n")


@pytest.fixture
def broken(tiny_corpus, tmp_path):
    """A copy of the tiny corpus with one fault in each of nine training utterances."""
    root = tmp_path / "broken"
    shutil.copytree(tiny_corpus, root)
    wavs = sorted(p for p in root.glob("TRAIN/*/*/*.WAV") if not p.name.startswith("SA"))
    w = {k: wavs[i] for i, k in enumerate(
        ["nophn", "unsorted", "overlap", "past", "unknown", "trunc", "rate", "empty", "garbage"]
    )}  # fmt: skip
    w["nophn"].with_suffix(".PHN").unlink()
    phn = w["unsorted"].with_suffix(".PHN")
    lines = phn.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    phn.write_text("\n".join(lines) + "\n")
    _edit_line(w["overlap"].with_suffix(".PHN"), 4, lambda p: f"{int(p[0]) - 50} {p[1]} {p[2]}")
    n = sf.info(str(w["past"])).frames
    phn = w["past"].with_suffix(".PHN")
    last = len(phn.read_text().splitlines())
    _edit_line(phn, last, lambda p: f"{p[0]} {n + 100} {p[2]}")
    _edit_line(w["unknown"].with_suffix(".PHN"), 3, lambda p: f"{p[0]} {p[1]} xx")
    data = w["trunc"].read_bytes()
    w["trunc"].write_bytes(data[: len(data) // 2])
    audio, _ = sf.read(str(w["rate"]), dtype="int16")
    sf.write(str(w["rate"]), audio, 8000, format="NIST", subtype="PCM_16")
    w["empty"].with_suffix(".PHN").write_text("")
    w["garbage"].write_bytes(b"\x00garbage" * 100)
    return root, w, last


def test_all_problems_reported_together(broken):
    root, w, last = broken
    with pytest.raises(CorpusError) as e:
        read_timit(root)
    problems = e.value.problems
    msg = str(e.value)
    assert len(problems) >= 9
    assert isinstance(e.value, ValueError)

    def has(path: Path, *parts: str) -> bool:
        return any(str(path) in p and all(x in p for x in parts) for p in problems)

    assert has(w["nophn"], ".PHN")
    assert has(w["unsorted"].with_suffix(".PHN"), ":3:", "unsorted or overlapping")
    assert has(w["overlap"].with_suffix(".PHN"), ":4:", "unsorted or overlapping")
    assert has(w["past"].with_suffix(".PHN"), f":{last}:", "past the audio end")
    assert has(w["unknown"].with_suffix(".PHN"), ":3:", "unknown phone", "'xx'")
    assert has(w["trunc"], "truncated")
    assert has(w["rate"], "sample rate 8000")
    assert has(w["empty"].with_suffix(".PHN"), "empty utterance")
    assert has(w["garbage"], "unreadable")
    assert all(p in msg for p in problems)


def test_skip_bad_skips_and_logs(broken, caplog):
    root, _, _ = broken
    with caplog.at_level(logging.WARNING, logger="recipes"):
        splits = read_timit(root, skip_bad=True)
    assert len(splits["train"]) == 12 - 9
    assert len(splits["dev"]) == 6 and len(splits["test"]) == 6
    assert "skipped 9 bad utterance(s)" in caplog.text


def test_missing_train_folder_and_empty_audio(tiny_corpus, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(tiny_corpus, root)
    wav = next(p for p in sorted(root.glob("TEST/*/*/*.WAV")) if not p.name.startswith("SA"))
    sf.write(str(wav), np.zeros(0, dtype=np.int16), 16000, format="NIST", subtype="PCM_16")
    shutil.rmtree(root / "TRAIN")
    with pytest.raises(CorpusError) as e:
        read_timit(root, skip_bad=True)  # skipping cannot make up for a missing split
    assert any("no TRAIN folder" in p for p in e.value.problems)
    assert any(str(wav) in p and ("empty" in p or "unreadable" in p) for p in e.value.problems)
