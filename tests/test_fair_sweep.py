"""The fair per-type sweep: best learning rate by dev PER, seeds only there, resumable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from recipes.toolkit.run.sweep import (
    SweepPlan,
    SweepRun,
    best_learning_rates,
    run_sweep,
    train_with_recipe,
)
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


class MeetingRecipe(FakeRecipe):
    """A FakeRecipe whose first two runs wait for each other (they finish only side by side);
    after the meeting the one that does not fail takes ``linger`` seconds more."""

    def __init__(self, fail: str | None = None, linger: float = 0.0) -> None:
        super().__init__(fail)
        self.meeting = threading.Barrier(2, timeout=20)
        self.calls = 0
        self.lock = threading.Lock()
        self.linger = linger

    def __call__(self, run, run_dir: Path, overrides) -> int:
        with self.lock:
            self.calls += 1
            first_two = self.calls <= 2
        if first_two:
            self.meeting.wait()  # BrokenBarrierError if the two never run at the same time
            if run.name != self.fail:
                time.sleep(self.linger)
        return super().__call__(run, run_dir, overrides)


def test_jobs_train_side_by_side_with_the_same_outcome(tmp_path):
    serial = FakeRecipe()
    best_serial, final_serial = run_sweep(plan(), tmp_path / "serial", serial)
    recipe = MeetingRecipe()
    best, final = run_sweep(plan(), tmp_path / "jobs", recipe, jobs=2)
    assert best == best_serial
    assert [p.relative_to(tmp_path / "jobs") for p in final] == [
        p.relative_to(tmp_path / "serial") for p in final_serial]  # fmt: skip
    assert sorted(recipe.trained) == sorted(serial.trained)


def test_with_jobs_a_failure_starts_no_further_run(tmp_path):
    recipe = MeetingRecipe(fail="gru/lr0.001/seed1", linger=0.5)
    with pytest.raises(RuntimeError, match="gru/lr0.001/seed1 failed"):
        run_sweep(plan(), tmp_path, recipe, jobs=2)
    # the failure and the run beside it (which ends after the failure); nothing after them
    assert sorted(recipe.trained) == ["gru/lr0.001/seed1", "gru/lr0.002/seed1"]
    with pytest.raises(ValueError, match="jobs"):
        run_sweep(plan(), tmp_path, recipe, jobs=0)


def test_a_quiet_runner_logs_to_the_run_folder_with_its_threads(tmp_path, monkeypatch):
    """The recipe runner with threads and quiet: a module that prints its thread setting."""
    (tmp_path / "print_threads.py").write_text(
        "import os, sys\nprint('threads', os.environ['OMP_NUM_THREADS'], sys.argv[1:])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    runner = train_with_recipe("print_threads", threads=3, quiet=True)
    run_dir = tmp_path / "gru" / "lr0.001" / "seed1"
    assert runner(SweepRun("gru", 0.001, 1), run_dir, ["x=1"]) == 0
    text = (run_dir / "sweep.log").read_text()
    assert text.startswith("threads 3 ['x=1', 'rnn=gru', 'optim.lr=0.001', 'seed=1'"), text


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
