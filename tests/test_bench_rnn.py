"""The layer benchmark (scripts/bench_rnn.py): what it reports must be the layer's own."""

import importlib.util
import json

import torch

from tests.recipe_helpers import REPO

TINY = ["--batch", "2", "--frames", "30", "--hidden", "16", "--layers", "1", "--threads", "1"]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_rnn", REPO / "scripts" / "bench_rnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_memory_child_reports_its_own_peak_not_the_parents():
    """Linux hands a parent's RSS peak to a vfork + exec child through ru_maxrss."""
    bench = load_bench()
    ballast = torch.ones(400 * 2**20 // 4)  # 400 MiB resident in this process
    ballast.add_(1.0)
    args = bench.parse_args(TINY)
    for allocator in ("live", "default"):
        args.allocator = allocator
        peak = bench.measure_memory("ligru", "M", args)
        assert 0 <= peak < 100 * 2**20, (allocator, peak)
    del ballast


def test_table_has_every_type_with_ratios_to_gru(tmp_path):
    bench = load_bench()
    out = tmp_path / "bench.json"
    argv = [*TINY, "--config", "S", "--repeats", "1", "--types", "ligru", "lstm"]
    argv += ["--json", str(out)]
    bench.main(argv)
    table = json.loads(out.read_text())
    rows = table["results"]["S"]
    assert list(rows) == ["torch.nn.GRU", "ligru", "lstm"]
    assert all(row["train_ms"] > 0 and row["infer_ms"] > 0 for row in rows.values())
    assert table["configs"]["S"]["hidden"] == 16  # the flags reached the configuration
