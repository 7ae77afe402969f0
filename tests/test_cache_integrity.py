"""The feature cache: damaged files are named and recomputed, a killed writer's temporary file is
removed by the next run, caches of the first format are converted, files get the usual mode."""

import json
import logging
import os
from pathlib import Path

import torch

import recipes.toolkit.run.atomic as atomic
from recipes.timit.corpus import read_timit
from recipes.timit.prepare import prepare_corpus
from recipes.toolkit.data.feature_config import FeatureConfig
from recipes.toolkit.data.features import cache_key, split_files
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
    (train, _), (dev, _) = split_files(folder, "train"), split_files(folder, "dev")
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


def test_an_array_without_its_index_or_with_a_torn_index_is_recomputed(tiny_data_cfg, caplog):
    first = prepare_corpus(tiny_data_cfg, RAW40)
    folder = _cache_folder(tiny_data_cfg)
    split_files(folder, "train")[1].unlink()  # a kill between the array and its index
    split_files(folder, "dev")[1].write_text('{"utt_ids": [')
    with caplog.at_level(logging.INFO, logger="recipes"):
        again = prepare_corpus(tiny_data_cfg, RAW40)
    assert "train.f32 has no index" in caplog.text
    (warned,) = _warnings(caplog)
    assert "dev.json is unreadable" in warned
    assert caplog.text.count("computing features for") == 2
    _assert_same_features(first, again)


def _write_first_format_cache(cfg: dict, reference) -> Path:
    """What the first cache format left: one ``torch.save`` blob per split."""
    root = Path(cfg["root"])
    splits = read_timit(root)
    folder = Path(cfg["cache_dir"]) / cache_key(root, splits, FeatureConfig(), version=1)
    folder.mkdir(parents=True)
    for name, split in reference.splits.items():
        feats = list(split.feats)
        blob = {"utt_ids": list(split.utt_ids), "dim": 40, "lengths": [len(f) for f in feats],
                "data": torch.cat(feats)}  # fmt: skip
        torch.save(blob, folder / f"{name}.pt")
        (folder / f"{name}.pt.sha256.json").write_text("{}")
    return folder


def test_a_cache_of_the_first_format_is_converted(tiny_data_cfg, tmp_path, caplog):
    reference = prepare_corpus({**tiny_data_cfg, "cache_dir": str(tmp_path / "ref")}, RAW40)
    old = _write_first_format_cache(tiny_data_cfg, reference)
    with caplog.at_level(logging.INFO, logger="recipes"):
        converted = prepare_corpus(tiny_data_cfg, RAW40)
    assert "computing features" not in caplog.text and not _warnings(caplog)
    assert caplog.text.count("converted old-format cached features") == 3
    assert not list(old.iterdir())  # the old blobs and their sidecars are gone
    _assert_same_features(reference, converted)
    assert all(s.feats.memory_mapped for s in converted.splits.values())


def test_a_torn_cache_of_the_first_format_is_named_and_recomputed(tiny_data_cfg, tmp_path, caplog):
    reference = prepare_corpus({**tiny_data_cfg, "cache_dir": str(tmp_path / "ref")}, RAW40)
    old = _write_first_format_cache(tiny_data_cfg, reference) / "test.pt"
    os.truncate(old, old.stat().st_size // 2)
    with caplog.at_level(logging.INFO, logger="recipes"):
        again = prepare_corpus(tiny_data_cfg, RAW40)
    (warned,) = _warnings(caplog)
    assert str(old) in warned and "cannot be loaded" in warned
    assert "computing features for test" in caplog.text
    assert caplog.text.count("converted old-format") == 2
    _assert_same_features(reference, again)


CHILD = """
import json, signal, sys
from pathlib import Path
import recipes.toolkit.data.features as features
from recipes.timit.prepare import prepare_corpus

data, config, marker = json.loads(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3])
real_fbank, calls = features.compute_fbank, []

def fbank_until_killed(waveform, cfg):
    calls.append(1)
    if len(calls) == 4:  # the temporary array file holds the first utterances
        marker.write_text("writing")
        signal.pause()
    return real_fbank(waveform, cfg)

features.compute_fbank = fbank_until_killed
prepare_corpus(data, config)
"""


def test_a_temporary_file_left_by_a_killed_run_is_removed(tiny_data_cfg, tmp_path, caplog):
    marker = tmp_path / "writing"
    args = [json.dumps(tiny_data_cfg), json.dumps(RAW40), str(marker)]
    run_until_marker_then_kill(CHILD, args, marker, tmp_path / "child.log")
    folder = _cache_folder(tiny_data_cfg)
    (left,) = atomic.temporary_files(folder)  # what the kill left: the torn temporary file
    assert left.name.startswith(".train.f32.") and not (folder / "train.f32").exists()

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
    assert {"train.f32", "train.json", "config.json", ".lock"} <= names
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {n: "0o644" for n in names}
