"""The feature cache: damaged files are named and recomputed, a killed writer's temporary file is
removed by the next run, old caches without checksums are kept, files get the usual mode."""

import json
import logging
import os
from pathlib import Path

import torch

import recipes.toolkit.run.atomic as atomic
from recipes.timit.prepare import prepare_corpus
from recipes.toolkit.data.features import checksum_path
from tests.kill_helpers import run_until_marker_then_kill

RAW40 = {"num_mel_bins": 40, "frame_length_ms": 25.0, "frame_shift_ms": 10.0, "dither": 0.0,
         "deltas": 0, "normalization": "none"}  # fmt: skip


def _cache_folder(cfg: dict) -> Path:
    (folder,) = Path(cfg["cache_dir"]).iterdir()
    return folder


def _assert_same_features(a, b) -> None:
    for split in ("train", "dev", "test"):
        assert a.splits[split].utt_ids == b.splits[split].utt_ids
        for x, y in zip(a.splits[split].feats, b.splits[split].feats, strict=True):
            assert torch.equal(x, y)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_truncated_and_corrupted_caches_are_named_and_recomputed(tiny_data_cfg, tmp_path, caplog):
    prepare_corpus(tiny_data_cfg, RAW40)
    folder = _cache_folder(tiny_data_cfg)
    train, dev = folder / "train.pt", folder / "dev.pt"
    os.truncate(train, train.stat().st_size // 2)
    data = bytearray(dev.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    dev.write_bytes(data)

    with caplog.at_level(logging.INFO, logger="recipes"):
        again = prepare_corpus(tiny_data_cfg, RAW40)
    warned = _warnings(caplog)
    assert len(warned) == 2, warned
    assert any(str(train) in w and "bytes where" in w and "recomputing" in w for w in warned)
    assert any(str(dev) in w and "sha256" in w and "recomputing" in w for w in warned)
    assert "computing features for train" in caplog.text
    assert "computing features for dev" in caplog.text
    assert "computing features for test" not in caplog.text

    fresh = prepare_corpus({**tiny_data_cfg, "cache_dir": str(tmp_path / "fresh")}, RAW40)
    _assert_same_features(again, fresh)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="recipes"):
        prepare_corpus(tiny_data_cfg, RAW40)
    assert not _warnings(caplog)
    assert caplog.text.count("reusing cached features") == 3


def test_a_cache_without_checksums_is_verified_by_loading_and_kept(tiny_data_cfg, caplog):
    first = prepare_corpus(tiny_data_cfg, RAW40)
    folder = _cache_folder(tiny_data_cfg)
    blobs = sorted(folder.glob("*.pt"))
    for blob in blobs:  # what a cache written before checksums existed looks like
        checksum_path(blob).unlink()
    mtimes = [p.stat().st_mtime_ns for p in blobs]
    with caplog.at_level(logging.INFO, logger="recipes"):
        again = prepare_corpus(tiny_data_cfg, RAW40)
    assert "computing features" not in caplog.text and not _warnings(caplog)
    assert caplog.text.count("reusing cached features") == 3
    assert [p.stat().st_mtime_ns for p in blobs] == mtimes
    assert _cache_folder(tiny_data_cfg) == folder  # same cache key
    for blob in blobs:
        record = json.loads(checksum_path(blob).read_text())
        assert record["bytes"] == blob.stat().st_size
    _assert_same_features(first, again)

    test = folder / "test.pt"  # an old cache that is torn: no checksum, does not load
    os.truncate(test, test.stat().st_size // 2)
    checksum_path(test).unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="recipes"):
        third = prepare_corpus(tiny_data_cfg, RAW40)
    (warned,) = _warnings(caplog)
    assert str(test) in warned and "cannot be loaded" in warned
    assert "computing features for test" in caplog.text
    _assert_same_features(first, third)


CHILD = """
import json, signal, sys
from pathlib import Path
import torch
from recipes.timit.prepare import prepare_corpus

data, features, marker = json.loads(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3])

def save_until_killed(obj, handle, *args, **kwargs):
    handle.write(b"PK\\x03\\x04 the first part of a cache blob")
    handle.flush()
    marker.write_text("writing")
    signal.pause()

torch.save = save_until_killed
prepare_corpus(data, features)
"""


def test_a_temporary_file_left_by_a_killed_run_is_removed(tiny_data_cfg, tmp_path, caplog):
    marker = tmp_path / "writing"
    args = [json.dumps(tiny_data_cfg), json.dumps(RAW40), str(marker)]
    run_until_marker_then_kill(CHILD, args, marker, tmp_path / "child.log")
    folder = _cache_folder(tiny_data_cfg)
    (left,) = atomic.temporary_files(folder)  # what the kill left: the torn temporary file
    assert left.name.startswith(".train.pt.") and not (folder / "train.pt").exists()

    with caplog.at_level(logging.INFO, logger="recipes"):
        again = prepare_corpus(tiny_data_cfg, RAW40)
    (warned,) = _warnings(caplog)
    assert str(left) in warned and "removing" in warned
    assert not left.exists() and not atomic.temporary_files(folder)
    fresh = prepare_corpus({**tiny_data_cfg, "cache_dir": str(tmp_path / "fresh")}, RAW40)
    _assert_same_features(again, fresh)


def test_cache_files_get_the_usual_mode(umask_022, tiny_data_cfg):
    prepare_corpus(tiny_data_cfg, RAW40)
    files = sorted(_cache_folder(tiny_data_cfg).iterdir())
    names = {p.name for p in files}
    assert {"train.pt", "train.pt.sha256.json", "config.json", ".lock"} <= names
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {n: "0o644" for n in names}
