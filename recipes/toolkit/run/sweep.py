"""A fair comparison of rnn types: the same learning-rate grid for each, then seeds at its best.

Stage 1 trains every ``rnn`` type at every learning rate of the grid with the first seed; the
learning rate with the lowest dev PER (never the test PER) is each type's best. Stage 2 trains
the other seeds at that learning rate. The final table (:mod:`recipes.toolkit.run.summary`)
holds each type at its best, mean ± std over the seeds, with the significance test against the
best type. Every run has its own directory ``<out>/<rnn>/lr<lr>/seed<seed>``; a run with a
``results.json`` is not trained again, and an unfinished one resumes from its ``last.ckpt``
(the recipe's ``ckpt_path=auto``), so a sweep cut short continues where it stopped.

>>> plan = SweepPlan(types=["gru", "ligru"], lrs=[0.001, 0.002], seeds=[1, 2, 3])
>>> [run.name for run in plan.grid()][:2]
['gru/lr0.001/seed1', 'gru/lr0.002/seed1']
>>> best = {"gru": 0.001, "ligru": 0.002}
>>> [run.name for run in plan.seeds_at(best)][:2]
['gru/lr0.001/seed2', 'gru/lr0.001/seed3']
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from threading import Event

from recipes.toolkit.run.summary import split_per

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"


@dataclass(frozen=True)
class SweepRun:
    """One training run of the sweep: its type, learning rate and seed."""

    rnn: str
    lr: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.rnn}/lr{self.lr:g}/seed{self.seed}"

    def overrides(self) -> list[str]:
        return [f"rnn={self.rnn}", f"optim.lr={self.lr:g}", f"seed={self.seed}"]


@dataclass
class SweepPlan:
    """The grid (types x learning rates, first seed) and the seeds trained at each best."""

    types: Sequence[str]
    lrs: Sequence[float]
    seeds: Sequence[int]
    overrides: Sequence[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, values in (("types", self.types), ("lrs", self.lrs), ("seeds", self.seeds)):
            if not values:
                raise ValueError(f"the sweep needs at least one of {name}")
        clashing = [o for o in self.overrides if o.split("=", 1)[0].lstrip("+~")
                    in ("rnn", "optim.lr", "seed", "hydra.run.dir")]  # fmt: skip
        if clashing:
            raise ValueError(f"overrides {clashing} are set by the sweep itself: remove them")

    def grid(self) -> list[SweepRun]:
        return [SweepRun(t, lr, self.seeds[0]) for t in self.types for lr in self.lrs]

    def seeds_at(self, best_lr: dict[str, float]) -> list[SweepRun]:
        return [SweepRun(t, best_lr[t], s) for t in self.types for s in self.seeds[1:]]


def read_dev_per(run_dir: Path) -> float | None:
    """The dev PER of a finished run (``results.json``), else ``None``."""
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        return None
    dev = split_per(json.loads(path.read_text()), "dev")
    return None if dev is None else float(dev)


def best_learning_rates(plan: SweepPlan, out: Path) -> dict[str, float]:
    """Each type's learning rate with the lowest stage-1 dev PER (ties: the smaller rate).

    Raises ``RuntimeError`` naming the runs without a result, so no type is ranked on a
    partial grid."""
    missing, best = [], {}
    for rnn in plan.types:
        scored = []
        for run in (r for r in plan.grid() if r.rnn == rnn):
            dev = read_dev_per(out / run.name)
            if dev is None:
                missing.append(run.name)
            else:
                scored.append((dev, run.lr))
        if scored:
            best[rnn] = min(scored)[1]
    if missing:
        raise RuntimeError(f"stage-1 runs without results.json: {missing}; rerun the sweep")
    return best


Runner = Callable[[SweepRun, Path, Sequence[str]], int]


def train_with_recipe(module: str, threads: int | None = None, quiet: bool = False) -> Runner:
    """A runner that trains one run with ``python -m module`` (a task's training entry point,
    e.g. ``recipes.timit.train``) in its own directory. ``threads``: the run's OpenMP / MKL
    threads (``OMP_NUM_THREADS``); ``None`` keeps the environment's. ``quiet``: the run's output
    goes to ``<run_dir>/sweep.log`` instead of this terminal (for runs side by side)."""

    def run(sweep_run: SweepRun, run_dir: Path, overrides: Sequence[str]) -> int:
        command = [sys.executable, "-m", module, *overrides, *sweep_run.overrides(),
                   f"hydra.run.dir={run_dir}"]  # fmt: skip
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        if threads is not None:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        if not quiet:
            return subprocess.call(command, env=env)
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "sweep.log", "w") as output:
            return subprocess.call(command, env=env, stdout=output, stderr=subprocess.STDOUT)

    return run


def run_sweep(
    plan: SweepPlan, out: Path, runner: Runner, jobs: int = 1
) -> tuple[dict[str, float], list[Path]]:
    """Train what is missing of both stages, ``jobs`` runs at a time; return each type's best
    learning rate and the run directories of the final table (every seed at each best). A
    failed run stops the sweep with its name once the runs in flight have ended (its directory
    keeps the log). Which runs train side by side changes no result: each is its own process
    with its own seed (its thread count is the runner's)."""
    out = Path(out)
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    failed = Event()  # set by the first failure: no run starts after it

    def train_one(stage: str, index: int, total: int, sweep_run: SweepRun) -> str | None:
        if failed.is_set():
            return None
        run_dir = out / sweep_run.name
        log.info("%s %d/%d %s: training", stage, index, total, sweep_run.name)
        code = runner(sweep_run, run_dir, plan.overrides)
        dev = read_dev_per(run_dir)
        if code != 0 or dev is None:
            failed.set()
            log.error("%s %s failed (exit %s): see %s", stage, sweep_run.name, code, run_dir)
            return f"{sweep_run.name} failed (exit {code}): see {run_dir}"
        log.info("%s %s: done, dev PER %.2f", stage, sweep_run.name, dev)
        return None

    def train(runs: list[SweepRun], stage: str) -> None:
        todo = []
        for index, sweep_run in enumerate(runs, start=1):
            if read_dev_per(out / sweep_run.name) is not None:
                log.info("%s %d/%d %s: done before, kept", stage, index, len(runs), sweep_run.name)
            else:
                todo.append((stage, index, len(runs), sweep_run))
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            failures = [f for f in pool.map(lambda task: train_one(*task), todo) if f]
        if failures:
            raise RuntimeError("; ".join(failures))

    train(plan.grid(), "grid")
    best = best_learning_rates(plan, out)
    train(plan.seeds_at(best), "seeds")
    final = [out / SweepRun(t, best[t], s).name for t in plan.types for s in plan.seeds]
    return best, final


def grid_table(plan: SweepPlan, out: Path, best: dict[str, float]) -> str:
    """Markdown: stage-1 dev PER of every type (rows) at every learning rate (columns)."""
    head = "| rnn | " + " | ".join(f"lr {lr:g}" for lr in plan.lrs) + " |"
    lines = [head, "| --- |" + " --- |" * len(plan.lrs)]
    for rnn in plan.types:
        cells = []
        for lr in plan.lrs:
            dev = read_dev_per(out / SweepRun(rnn, lr, plan.seeds[0]).name)
            text = "–" if dev is None else f"{dev:.2f}"
            cells.append(f"**{text}**" if best.get(rnn) == lr else text)
        lines.append(f"| {rnn} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
