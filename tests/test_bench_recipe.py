"""The recipe benchmark (scripts/bench_recipe.py): the recipe's own step, per type, side by side."""

import json

import pytest
import torch

from rnnlib import build_rnn
from tests.recipe_helpers import load_script

TINY_CORPUS = [
    "data.generator.num_train_speakers=2",
    "data.generator.num_dev_speakers=1",
    "data.generator.num_test_speakers=1",
    "data.generator.sentences_per_speaker=2",
    "data.max_frames=800",  # two training batches
    "prepare_workers=1",
    "rnn.hidden_size=16",
    "rnn.num_layers=2",
]


def load_bench():
    return load_script("bench_recipe")


def test_table_has_every_type_on_the_same_batches_with_ratios_to_gru(tmp_path):
    bench = load_bench()
    out = tmp_path / "bench.json"
    argv = ["--types", "lstm", "lstm@packed", "ligru", "ligru+bf16", "--steps", "2"]
    argv += ["--threads", "1"]
    argv += ["--data-dir", str(tmp_path / "data"), "--json", str(out)]
    bench.main([*argv, "--corpus-overrides", *TINY_CORPUS])
    table = json.loads(out.read_text())
    rows = table["results"]
    assert list(rows) == ["gru", "lstm", "lstm@packed", "ligru", "ligru+bf16"]
    assert table["baseline"] == "gru" and table["steps"] == 2 and table["threads"] == 1
    batches = table["batches"]
    assert len(batches["sizes"]) == 2 and 0 < batches["frames"] <= batches["padded_frames"]
    for row in rows.values():
        assert len(row["step_ms"]) == 2 and all(ms > 0 for ms in row["step_ms"])
        assert row["ms_per_step"] == pytest.approx(sum(row["step_ms"]) / 2)
        assert row["median_ms"] > 0 and row["skipped_steps"] == 0
        seconds = row["ms_per_step"] * 2 / 1e3
        assert row["frames_per_s"] * seconds == pytest.approx(batches["frames"])
        assert row["x_baseline"] == pytest.approx(row["ms_per_step"] / rows["gru"]["ms_per_step"])
        assert row["bare_layer_ms"] > 0
        assert row["x_bare_layer"] == pytest.approx(row["ms_per_step"] / row["bare_layer_ms"])
    assert rows["gru"]["x_baseline"] == 1.0
    # The overrides reached every model (2 x 16 units, not 3 x 256); the packed run is the same
    # model on another route.
    assert all(row["parameters"] < 50_000 for row in rows.values())
    assert rows["lstm@packed"]["parameters"] == rows["lstm"]["parameters"]
    assert rows["ligru+bf16"]["parameters"] == rows["ligru"]["parameters"]


def test_baseline_is_any_type_and_every_ratio_is_to_it(tmp_path):
    bench = load_bench()
    argv = ["--baseline", "ligru", "--types", "ligru+bf16", "--steps", "1", "--threads", "1"]
    argv += ["--data-dir", str(tmp_path / "data"), "--corpus-overrides", *TINY_CORPUS]
    table = bench.main(argv)
    rows = table["results"]
    assert table["baseline"] == "ligru" and list(rows) == ["ligru", "ligru+bf16"]
    assert rows["ligru"]["x_baseline"] == 1.0
    ratio = rows["ligru+bf16"]["ms_per_step"] / rows["ligru"]["ms_per_step"]
    assert rows["ligru+bf16"]["x_baseline"] == pytest.approx(ratio)


def test_bare_layer_takes_the_front_end_outputs_of_a_crdnn(tmp_path):
    # The CRDNN's encoder reads the convolutions' channels x pooled bins, not the 40 features.
    bench = load_bench()
    crdnn = ["model=crdnn", "model.conv2d_channels=[3]", "model.dnn_sizes=[8]"]
    argv = ["--baseline", "ligru", "--types", "ligru", "--steps", "1", "--threads", "1"]
    argv += ["--data-dir", str(tmp_path / "data"), "--corpus-overrides", *TINY_CORPUS, *crdnn]
    row = bench.main(argv)["results"]["ligru"]
    assert row["bare_layer_ms"] > 0 and row["skipped_steps"] == 0


def test_bf16_type_steps_under_autocast_as_bf16_mixed():
    bench = load_bench()
    assert bench.split_type("lstm@packed+bf16") == ("lstm", True)
    assert bench.split_type("ligru+bf16") == ("ligru", False)
    assert bench.split_type("sligru@torch+bf16") == ("sligru", False)
    assert bench.loop_route_of("sligru@torch+bf16") == "torch"
    assert bench.loop_route_of("lstm@packed") is None
    layer = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with bench.autocast_for("ligru+bf16", "cpu"):
        assert layer(x).dtype == torch.bfloat16
    with bench.autocast_for("ligru", "cpu"):
        assert layer(x).dtype == torch.float32


def test_packed_route_is_the_same_function_as_the_unpacked_one():
    bench = load_bench()
    torch.manual_seed(0)
    encoder = build_rnn("lstm", input_size=4, hidden_size=6, num_layers=2, bidirectional=True)
    x, lengths = torch.randn(3, 9, 4), torch.tensor([4, 9, 1])
    unpacked = encoder.eval()(x, lengths)
    bench.use_packed_route(encoder)
    packed = encoder(x, lengths)
    torch.testing.assert_close(packed[0], unpacked[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed[1], unpacked[1], rtol=1e-5, atol=1e-5)


def test_packed_route_only_for_the_torch_types():
    bench = load_bench()
    with pytest.raises(ValueError, match="rnn, lstm and gru"):
        bench.use_packed_route(build_rnn("ligru", input_size=4, hidden_size=6))
    with pytest.raises(ValueError, match="unknown route"):
        bench.split_type("lstm@fast")
