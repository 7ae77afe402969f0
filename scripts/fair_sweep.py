"""Each rnn type at its best: the same learning-rate grid for all, then 3 seeds at each best.

python scripts/fair_sweep.py --out outputs/fair_sweep
python scripts/fair_sweep.py --out outputs/fair_sweep --types gru,ligru --lrs 1e-3,2e-3 \
    -- trainer.max_epochs=10 trainer.precision=bf16-mixed
python scripts/fair_sweep.py --out outputs/fair_sweep --jobs 2   # two runs at a time

Arguments after ``--`` are Hydra overrides given to every run (the sweep sets ``rnn``,
``optim.lr``, ``seed`` and the run directory). Stopped or cut short, the same command continues:
finished runs are kept, an unfinished one resumes. Writes ``grid.md`` (stage-1 dev PER, each
type's best in bold) and ``results.{md,csv}`` (each type at its best, mean ± std over seeds,
significance against the best) into ``--out``. With ``--jobs N`` N runs train side by side,
each with ``--threads`` OpenMP threads (default: this machine's cores divided by N) and its
output in ``<run>/sweep.log``; a run's result depends on its thread count, not on its company.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recipes.toolkit.run.summary import load_run, summarize, to_csv, to_markdown  # noqa: E402
from recipes.toolkit.run.sweep import (  # noqa: E402
    SweepPlan,
    grid_table,
    run_sweep,
    train_with_recipe,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the sweep's runs")
    parser.add_argument("--types", default="rnn,lstm,gru,ligru,sligru")
    parser.add_argument("--lrs", default="5e-4,1e-3,2e-3", help="learning-rate grid")
    parser.add_argument("--seeds", default="1,2,3", help="the first is the grid's seed")
    parser.add_argument("--task", default="recipes.timit.train", help="training entry point")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time")
    parser.add_argument("--threads", type=int, default=None,
                        help="OpenMP threads per run (default with --jobs > 1: cores / jobs)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run (after --)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    plan = SweepPlan(
        types=args.types.split(","),
        lrs=[float(v) for v in args.lrs.split(",")],
        seeds=[int(v) for v in args.seeds.split(",")],
        overrides=args.overrides,
    )
    threads = args.threads
    if threads is None and args.jobs > 1:
        threads = max(1, (os.cpu_count() or 1) // args.jobs)
    runner = train_with_recipe(args.task, threads=threads, quiet=args.jobs > 1)
    best, final = run_sweep(plan, args.out, runner, jobs=args.jobs)
    grid = grid_table(plan, args.out, best)
    (args.out / "grid.md").write_text(grid)
    records = [load_run(path) for path in final]
    rows = summarize(records)
    failed = [r for r in records if not r.ok]
    table = to_markdown(rows, failed)
    (args.out / "results.md").write_text(table)
    (args.out / "results.csv").write_text(to_csv(rows, failed))
    print(grid + "\n" + table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
