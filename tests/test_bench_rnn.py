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


def test_bf16_rows_run_in_bfloat16_beside_float32(tmp_path):
    bench = load_bench()
    out = tmp_path / "bench.json"
    argv = [*TINY, "--config", "S", "--repeats", "1", "--types", "ligru", "--bf16"]
    bench.main([*argv, "--json", str(out)])
    rows = json.loads(out.read_text())["results"]["S"]
    assert list(rows) == ["torch.nn.GRU", "ligru", "torch.nn.GRU+bf16", "ligru+bf16"]
    for name in ("torch.nn.GRU+bf16", "ligru+bf16"):
        error = rows[name]["bf16_error"]
        assert 0 < error["mean"] <= error["max"] < 0.1, (name, error)  # rounded, not broken
    assert "bf16_error" not in rows["ligru"]
    assert bench.split_route("ligru@blas+bf16") == ("ligru", "blas")
    with bench.precision("ligru+bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu")
    gru = bench.build("torch.nn.GRU+bf16", table_config(bench), "cpu")
    assert next(gru.parameters()).dtype == torch.bfloat16  # autocast leaves torch.nn.GRU alone


def table_config(bench):
    return bench.resolve_config("S", bench.parse_args(TINY))


def test_type_names_force_loop_and_product_routes(tmp_path):
    from rnnlib.ligru import loop_route
    from rnnlib.ligru.products import product_route

    bench = load_bench()
    with bench.forced_routes("ligru@triton"):
        assert loop_route.loop_route(torch.device("cuda"), torch.float32) == "triton"
    with bench.forced_routes("ligru@torch+bf16"):
        assert loop_route.loop_route(torch.device("cuda"), torch.float32) == "torch"
    for route in ("onednn", "blas"):
        with bench.forced_routes(f"sligru@{route}"):
            assert product_route() == route
    out = tmp_path / "bench.json"
    argv = [*TINY, "--config", "S", "--repeats", "1", "--types", "ligru@torch", "ligru@triton"]
    defaults = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        bench.main([*argv, "--tf32", "--json", str(out)])
        assert loop_route.TF32 and torch.backends.cudnn.allow_tf32  # --tf32 reached every type
    finally:
        loop_route.TF32 = False
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = defaults
    table = json.loads(out.read_text())
    assert table["tf32"] is True
    assert list(table["results"]["S"]) == ["torch.nn.GRU", "ligru@torch", "ligru@triton"]
