"""Run summaries (recipes.toolkit.run.summary, scripts/summarize_runs.py), the parameter table."""

import csv
import importlib.util
import io
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recipes.toolkit.run.summary import (
    RunRecord,
    config_key,
    find_runs,
    load_run,
    plot,
    summarize,
    to_csv,
    to_markdown,
)
from tests.recipe_helpers import REPO, SMALL_CORPUS, SMALL_MODEL, results, run_entry


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(config: str, seed: int, dev: float | None, test: float | None, **kw) -> RunRecord:
    path = Path(f"/runs/{config}/{seed}")
    return RunRecord(path, config, seed, "gru", "3x256 bi", dev, test, **kw)


# ----- fast: synthetic records and hand-made run directories ------------------------------------
def test_summarize_groups_seeds_and_skips_failed_runs(tmp_path):
    records = [
        record("rnn=gru", 1, 20.0, 22.0, parameters=100, train_seconds=10.0, epochs=3),
        record("rnn=gru", 2, 21.0, 25.0, parameters=100, train_seconds=20.0, epochs=5),
        record("rnn=gru", 3, 23.0, 24.0, parameters=100, train_seconds=30.0, epochs=4),
        record("rnn=lstm", 1, 18.0, 19.0, parameters=200),
        record("rnn=gru", 4, None, None, status="failed", reason="no results.json"),
    ]
    rows = summarize(records)
    assert [r.config for r in rows] == ["rnn=lstm", "rnn=gru"]  # best mean dev PER first
    lstm, gru = rows
    assert gru.n == 3 and gru.seeds == [1, 2, 3]
    assert gru.dev_mean == pytest.approx(statistics.mean([20.0, 21.0, 23.0]))
    assert gru.dev_std == pytest.approx(statistics.stdev([20.0, 21.0, 23.0]))
    assert gru.test_std == pytest.approx(statistics.stdev([22.0, 25.0, 24.0]))
    assert (gru.parameters, gru.train_seconds, gru.epochs) == (100, 20.0, 4.0)
    assert lstm.n == 1 and lstm.dev_std is None

    failed = [r for r in records if not r.ok]
    markdown = to_markdown(rows, failed)
    assert "| rnn=gru | gru | 3x256 bi | 3 | 21.33 ± 1.53 |" in markdown
    assert "| 18.00 |" in markdown and "/runs/rnn=gru/4" in markdown
    table = list(csv.DictReader(io.StringIO(to_csv(rows, failed))))
    assert [t["status"] for t in table] == ["ok", "ok", "failed"]
    assert float(table[1]["dev_mean"]) == pytest.approx(gru.dev_mean)
    assert plot(rows, tmp_path / "per.png").stat().st_size > 0


def test_config_key_drops_seed_and_location_keys():
    overrides = ["seed=3", "rnn=lstm", "paths.data_dir=/d", "hydra.run.dir=/r", "+rnn.bias=false"]
    assert config_key(overrides) == "rnn.bias=false rnn=lstm"
    assert config_key(["seed=1"]) == "(defaults)"


def fake_run(run_dir: Path, overrides: list[str], seed: int, result: dict | None) -> Path:
    (run_dir / ".hydra").mkdir(parents=True)
    rnn = {"name": "lstm", "hidden_size": 64, "num_layers": 2, "bidirectional": True}
    config = {"seed": seed, "rnn": rnn, "paths": {"data_dir": "${oc.env:X}"}}
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if result is not None:
        (run_dir / "results.json").write_text(json.dumps(result))
    return run_dir


def test_load_run_reads_results_and_flags_missing_ones(tmp_path):
    result = {"parameters": 5, "epochs": 2, "train_seconds": 1.5,
              "eval": {"dev": {"per": 30.0}, "test": {"per": 31.0}}}  # fmt: skip
    good = fake_run(tmp_path / "sweep" / "0", ["rnn=lstm", "seed=2"], 2, result)
    bad = fake_run(tmp_path / "sweep" / "1", ["rnn=lstm", "seed=3"], 3, None)
    broken = fake_run(tmp_path / "other", ["rnn=lstm"], 1, None)
    (broken / "results.json").write_text("{truncated")
    assert find_runs([tmp_path / "sweep", broken]) == sorted(
        p.resolve() for p in (good, bad, broken)
    )

    ok = load_run(good)
    assert (ok.config, ok.seed, ok.topology, ok.dev_per, ok.test_per) == (
        "rnn=lstm", 2, "2x64 bi", 30.0, 31.0,
    )  # fmt: skip
    missing = load_run(bad)
    assert missing.status == "failed" and "no results.json" in missing.reason
    assert "unreadable" in load_run(broken).reason
    (bad / "job.err").write_text("Traceback ...\nValueError: boom\n")
    assert load_run(bad).reason == "job.err: ValueError: boom"


def test_param_table_counts_are_the_models_own(capsys):
    from rnnlib import build_rnn

    table = load_script("param_table")
    topology = {"input_size": 8, "hidden_size": 16, "num_layers": 2, "bidirectional": True}
    counts = dict(table.param_rows(topology))  # built on the meta device
    assert counts == dict(table.param_rows(topology, device="cpu"))
    for label, name, options in table.VARIANTS:
        model = build_rnn(name, **topology, **options)
        assert counts[label] == sum(p.numel() for p in model.parameters()), label
    full = dict(table.param_rows())
    assert full["ligru"] < full["gru"] < full["lstm"]
    assert full["ligru (share_directions)"] < full["ligru"] <= full["sligru"]
    table.main()
    assert "| lstm |" in capsys.readouterr().out


# ----- slow: real run directories from the real train entry point --------------------------------
@pytest.mark.slow
def test_summary_of_real_runs(tmp_path):
    data_dir, runs = tmp_path / "data", tmp_path / "runs"
    common = [*SMALL_CORPUS, *SMALL_MODEL, "trainer.max_epochs=1", "optim.lr=0.01"]
    jobs = {
        "gru_s1": ["rnn=gru", "seed=1"],
        "gru_s2": ["rnn=gru", "seed=2"],
        "rnn_s1": ["rnn=rnn", "seed=1"],
        # configure_optimizers raises: a run that started (config written) and failed
        "failed": ["rnn=gru", "seed=1", "optim._target_=torch.optim.NoSuchOptimizer"],
    }

    # One after another: concurrent runs on a 2-core machine oversubscribe torch's threads.
    done = {
        name: run_entry("train", [*common, *extra], data_dir, runs / name, check=False)
        for name, extra in jobs.items()
    }
    for name in ("gru_s1", "gru_s2", "rnn_s1"):
        assert done[name].returncode == 0, done[name].stderr[-3000:]
    assert done["failed"].returncode != 0 and "NoSuchOptimizer" in done["failed"].stderr
    assert (runs / "failed" / ".hydra" / "config.yaml").exists()
    assert not (runs / "failed" / "results.json").exists()

    out = tmp_path / "summary"
    command = [sys.executable, "scripts/summarize_runs.py", str(runs)]
    command += ["--markdown", str(out / "t.md"), "--csv", str(out / "t.csv")]
    command += ["--plot", str(out / "t.png")]
    out.mkdir()
    shown = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout
    rows = {r["config"]: r for r in csv.DictReader(open(out / "t.csv"))}
    gru = next(r for c, r in rows.items() if "rnn=gru" in c and r["status"] == "ok")
    pers = [results(runs / n)["eval"]["dev"]["per"] for n in ("gru_s1", "gru_s2")]
    tests = [results(runs / n)["eval"]["test"]["per"] for n in ("gru_s1", "gru_s2")]
    assert int(gru["n"]) == 2 and gru["seeds"] == "1 2"
    assert float(gru["dev_mean"]) == pytest.approx(statistics.mean(pers))
    assert float(gru["dev_std"]) == pytest.approx(statistics.stdev(pers))
    assert float(gru["test_mean"]) == pytest.approx(statistics.mean(tests))
    assert int(gru["parameters"]) == results(runs / "gru_s1")["parameters"]
    elman = next(r for c, r in rows.items() if "rnn=rnn" in c)
    assert int(elman["n"]) == 1
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["path"].endswith("failed")
    assert "Failed or unfinished runs (1)" in shown and shown == (out / "t.md").read_text()
    assert (out / "t.png").stat().st_size > 0
