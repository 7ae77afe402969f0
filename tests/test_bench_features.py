"""The data-path benchmark (scripts/bench_features.py) on two tiny corpora: every target row is
measured, and the figures agree with what the corpora hold."""

import json

import pytest

from recipes.timit.corpus import read_timit
from tests.recipe_helpers import load_script

pytestmark = pytest.mark.slow

TINY = [
    "data.generator.num_train_speakers=2",
    "data.generator.num_dev_speakers=1",
    "data.generator.num_test_speakers=1",
    "data.generator.sentences_per_speaker=2",
    "data.max_frames=800",
    "prepare_workers=1",
    "rnn.hidden_size=16",
    "rnn.num_layers=1",
]


def load_bench():
    return load_script("bench_features")


def test_every_target_row_is_measured_on_both_corpora(tmp_path):
    bench = load_bench()
    out = tmp_path / "bench.json"
    larger = ["data.root=${paths.data_dir}/larger", "data.generator.num_train_speakers=6",
              "data.generator.sentences_per_speaker=3"]  # fmt: skip
    argv = ["--workers", "1", "--threads", "1", "--steps", "1", "--data-dir", str(tmp_path / "d")]
    bench.main([*argv, "--json", str(out), "--overrides", *TINY, "--large-overrides", *larger])
    table = json.loads(out.read_text())
    small, large = table["builtin"], table["large"]
    for r, folder in ((small, "builtin_timit"), (large, "larger")):
        splits = read_timit(tmp_path / "d" / folder)
        assert r["utterances"] == sum(len(utts) for utts in splits.values())
    assert small["utterances"] < large["utterances"]
    assert 0 < small["hours"] < large["hours"]
    for r in (small, large):
        assert r["prep_x_real_time"] == pytest.approx(r["hours"] * 3600 / r["prep_seconds"])
        memory = r["memory"]
        assert memory["train_utterances"] > 0 and memory["train_frames"] > 0
        stages = ("before", "loaded", "epoch", "in_memory_copy")
        assert all(memory[stage]["RssAnon"] > 0 for stage in stages)
        assert r["epoch_batches"] >= 1 and r["epoch_loading_seconds"] > 0
        assert r["loading_share"] == pytest.approx(
            r["epoch_loading_seconds"] / r["epoch_training_seconds"]
        )
    rows = [t["row"] for t in table["targets"]]
    assert len(rows) == 5 and sum("preparation" in row for row in rows) == 2
    assert all(isinstance(t["met"], bool) for t in table["targets"])
