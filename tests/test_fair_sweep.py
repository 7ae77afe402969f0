"""The fair per-type sweep: best learning rate by dev PER, seeds only there, resumable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recipes.toolkit.run.sweep import SweepPlan, best_learning_rates, run_sweep
from tests.recipe_helpers import SMALL_CORPUS

REPO = Path(__file__).resolve().parents[1]

# dev PER per (type, lr); the test PER prefers the other rate, which must not matter.
DEV = {("gru", 0.001): 30.0, ("gru", 0.002): 25.0, ("ligru", 0.001): 20.0, ("ligru", 0.002): 40.0}


class FakeRecipe:
    """Writes the results.json a finished run leaves, and counts what it was asked to train."""

    def __init__(self, fail: str | None = None) -> None:
        self.trained: list[str] = []
        self.fail = fail

    def __call__(self, run, run_dir: Path, overrides) -> int:
        self.trained.append(run.name)
        if run.name == self.fail:
            return 1
        run_dir.mkdir(parents=True, exist_ok=True)
        dev = DEV[(run.rnn, run.lr)] + run.seed / 10
        test = 100 - dev
        results = {"eval": {"dev": {"per": dev}, "test": {"per": test}}}
        (run_dir / "results.json").write_text(json.dumps(results))
        return 0


def plan() -> SweepPlan:
    return SweepPlan(types=["gru", "ligru"], lrs=[0.001, 0.002], seeds=[1, 2, 3])


def test_each_type_gets_its_best_dev_rate_and_seeds_only_there(tmp_path):
    recipe = FakeRecipe()
    best, final = run_sweep(plan(), tmp_path, recipe)
    assert best == {"gru": 0.002, "ligru": 0.001}
    assert recipe.trained[:4] == ["gru/lr0.001/seed1", "gru/lr0.002/seed1",
                                  "ligru/lr0.001/seed1", "ligru/lr0.002/seed1"]  # fmt: skip
    assert sorted(recipe.trained[4:]) == ["gru/lr0.002/seed2", "gru/lr0.002/seed3",
                                          "ligru/lr0.001/seed2", "ligru/lr0.001/seed3"]  # fmt: skip
    assert [p.relative_to(tmp_path).as_posix() for p in final][:3] == [
        "gru/lr0.002/seed1", "gru/lr0.002/seed2", "gru/lr0.002/seed3"]  # fmt: skip


def test_a_rerun_trains_only_what_is_missing(tmp_path):
    with pytest.raises(RuntimeError, match="ligru/lr0.001/seed1 failed"):
        run_sweep(plan(), tmp_path, FakeRecipe(fail="ligru/lr0.001/seed1"))
    recipe = FakeRecipe()
    run_sweep(plan(), tmp_path, recipe)
    assert recipe.trained[:2] == ["ligru/lr0.001/seed1", "ligru/lr0.002/seed1"]
    assert len(recipe.trained) == 2 + 4


def test_ranking_refuses_a_partial_grid(tmp_path):
    FakeRecipe()(plan().grid()[0], tmp_path / plan().grid()[0].name, [])
    with pytest.raises(RuntimeError, match="gru/lr0.002/seed1"):
        best_learning_rates(plan(), tmp_path)


def test_overrides_the_sweep_sets_are_refused():
    with pytest.raises(ValueError, match="optim.lr"):
        SweepPlan(types=["gru"], lrs=[0.001], seeds=[1], overrides=["optim.lr=0.1"])


@pytest.mark.slow
def test_a_real_sweep_writes_the_grid_and_the_table(tmp_path):
    """Three real trainings (one type, two rates, two seeds) through the script."""
    tiny = ["rnn.hidden_size=8", "rnn.num_layers=1", "trainer.max_epochs=1"]
    out = tmp_path / "sweep"
    command = [sys.executable, str(REPO / "scripts" / "fair_sweep.py"), "--out", str(out),
               "--types", "gru", "--lrs", "1e-3,4e-3", "--seeds", "1,2", "--", *SMALL_CORPUS,
               *tiny]  # fmt: skip
    env = dict(os.environ, RNNLIB_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob("results.json"))
    assert len(runs) == 3 and runs[0].startswith("gru/lr0.001/seed1"), runs
    best = "lr0.001" if (out / "gru/lr0.001/seed2").exists() else "lr0.004"
    assert (out / "gru" / best / "seed2" / "results.json").is_file()
    grid = (out / "grid.md").read_text()
    assert "| gru |" in grid and grid.count("**") == 2  # the best rate in bold
    table = (out / "results.md").read_text()
    assert f"optim.lr={best[2:]}" in table and "| 2 |" in table, table
