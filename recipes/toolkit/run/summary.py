"""Summarise many run directories: mean ± std of PER over seeds per configuration.

A configuration is a run's Hydra overrides minus the seed and keys that only say where things
live (``hydra.*``, ``paths.*``, ...). Runs without a readable ``results.json`` are kept as failed
or unfinished records and reported, never dropped.

Each configuration is also compared with the best one (lowest mean test PER) on the test
utterances: NIST's matched-pairs test (:func:`~recipes.toolkit.evaluation.significance.mapsswe`,
utterances as segments) and a paired bootstrap interval of the PER difference, both on
per-utterance errors read from the runs' ``eval/test_hyp_ref.txt``. Seeds are pooled, not
paired: per utterance, a configuration's errors are summed over its seeds and divided by their
number (see :func:`~recipes.toolkit.evaluation.significance.pool_runs`).

Example:
    >>> rows = summarize([
    ...     RunRecord(Path("a"), "rnn=gru", 1, "gru", "3x256 bi", dev_per=20.0, test_per=22.0),
    ...     RunRecord(Path("b"), "rnn=gru", 2, "gru", "3x256 bi", dev_per=22.0, test_per=24.0),
    ... ])
    >>> rows[0].n, rows[0].dev_mean, rows[0].test_mean
    (2, 21.0, 23.0)
"""

import csv
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from recipes.toolkit.evaluation.significance import (
    mapsswe,
    pair_utterances,
    paired_bootstrap,
    pool_runs,
)

# Override keys that never change what is trained (besides the seed, which defines replicas).
IGNORED_KEYS = {"seed", "ckpt_path", "prepare_workers", "data.num_workers", "data.cache_dir"}
IGNORED_PREFIXES = ("hydra.", "hydra/", "paths.")
ERROR_FILES = ("*.err", "error*.txt", "error*.log")
SIGNIFICANCE_SPLIT = "test"  # the split whose per-utterance errors are compared with the best
ALPHA = 0.05  # "differs from the best" when the matched-pairs p-value is below this


@dataclass
class RunRecord:
    """One run directory: its configuration, seed and final metrics (``None`` when absent)."""

    path: Path
    config: str
    seed: int | None
    rnn: str
    topology: str
    dev_per: float | None = None
    test_per: float | None = None
    parameters: int | None = None
    train_seconds: float | None = None
    epochs: int | None = None
    status: str = "ok"  # ok | failed
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Row:
    """One configuration summarised over its successful seeds."""

    config: str
    rnn: str
    topology: str
    n: int
    seeds: list[int | None] = field(default_factory=list)
    dev_mean: float | None = None
    dev_std: float | None = None
    test_mean: float | None = None
    test_std: float | None = None
    parameters: int | None = None
    train_seconds: float | None = None
    epochs: float | None = None
    # Against the best configuration on SIGNIFICANCE_SPLIT: "best", "yes"/"no" (p < ALPHA) or
    # "–" (no comparison: no test PER, or per-utterance files missing; ``note`` says why).
    vs_best: str = "–"
    p_value: float | None = None  # matched-pairs test (MAPSSWE), two-sided
    diff_to_best: float | None = None  # PER of this configuration minus the best's (points)
    diff_ci_low: float | None = None  # paired bootstrap 95 % interval of diff_to_best
    diff_ci_high: float | None = None
    note: str = ""


def find_runs(paths: list[Path]) -> list[Path]:
    """Run directories (holding ``.hydra/config.yaml``) at or below each of ``paths``."""
    found: set[Path] = set()
    for path in map(Path, paths):
        if (path / ".hydra" / "config.yaml").is_file():
            found.add(path.resolve())
        elif path.is_dir():
            found.update(p.parent.parent.resolve() for p in path.rglob(".hydra/config.yaml"))
        else:
            raise FileNotFoundError(f"{path}: not a run directory nor a folder of runs")
    return sorted(found)


def config_key(overrides: list[str]) -> str:
    """The overrides that define a configuration, sorted; ``(defaults)`` when none remain."""
    kept = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in IGNORED_KEYS or key == "hydra" or key.startswith(IGNORED_PREFIXES):
            continue
        kept.append(override.lstrip("+"))
    return " ".join(sorted(kept)) or "(defaults)"


def _topology(rnn: dict) -> str:
    layers, hidden = rnn.get("num_layers", "?"), rnn.get("hidden_size", "?")
    return f"{layers}x{hidden} {'bi' if rnn.get('bidirectional') else 'uni'}"


def _error_reason(run_dir: Path) -> str:
    """The last line of a non-empty error file in ``run_dir``, if any."""
    for pattern in ERROR_FILES:
        for path in sorted(run_dir.glob(pattern)):
            lines = [line for line in path.read_text(errors="replace").splitlines() if line]
            if lines:
                return f"{path.name}: {lines[-1][:200]}"
    return ""


def split_per(results: dict, split: str) -> float | None:
    """The PER of ``split`` in a run's ``results.json`` (for dev, the training's best dev PER
    when the split was not evaluated after training), else ``None``."""
    fallback = results.get("best_dev_per") if split == "dev" else None
    return ((results.get("eval") or {}).get(split) or {}).get("per", fallback)


def load_run(path: Path) -> RunRecord:
    """Read ``.hydra/{config,overrides}.yaml`` and ``results.json`` of one run directory."""
    path = Path(path)
    config = yaml.safe_load((path / ".hydra" / "config.yaml").read_text()) or {}
    overrides_file = path / ".hydra" / "overrides.yaml"
    overrides = (
        yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else None
    ) or []
    rnn = config.get("rnn") or {}
    record = RunRecord(
        path=path,
        config=config_key(overrides),
        seed=config.get("seed"),
        rnn=str(rnn.get("name", "?")),
        topology=_topology(rnn),
    )
    results_file = path / "results.json"
    error = _error_reason(path)
    if not results_file.exists():
        has_ckpt = (path / "checkpoints" / "last.ckpt").exists()
        stage = "unfinished or crashed after an epoch" if has_ckpt else "crashed or never trained"
        record.status, record.reason = "failed", error or f"no results.json ({stage})"
        return record
    try:
        results = json.loads(results_file.read_text())
    except (json.JSONDecodeError, OSError) as exc:
        record.status, record.reason = "failed", f"unreadable results.json: {exc}"
        return record
    record.dev_per = split_per(results, "dev")
    record.test_per = split_per(results, "test")
    record.parameters = results.get("parameters")
    record.train_seconds = results.get("train_seconds")
    record.epochs = results.get("epochs")
    if record.dev_per is None and record.test_per is None:
        record.status, record.reason = "failed", error or "results.json holds no PER"
    return record


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (``None`` below two values)."""
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    std = statistics.stdev(present) if len(present) > 1 else None
    return statistics.fmean(present), std


def summarize(records: list[RunRecord], bootstrap_samples: int = 1000, seed: int = 0) -> list[Row]:
    """One row per configuration over its successful runs, sorted by mean dev PER, each
    compared with the best configuration on the test split (``vs_best`` and the fields after
    it; ``bootstrap_samples`` resamples drawn with ``seed``)."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        if record.ok:
            groups.setdefault(record.config, []).append(record)
    rows = []
    for config, runs in groups.items():
        dev_mean, dev_std = _mean_std([r.dev_per for r in runs])
        test_mean, test_std = _mean_std([r.test_per for r in runs])
        params = {r.parameters for r in runs if r.parameters is not None}
        seconds = [r.train_seconds for r in runs if r.train_seconds is not None]
        epochs = [r.epochs for r in runs if r.epochs is not None]
        rows.append(
            Row(
                config=config,
                rnn="/".join(sorted({r.rnn for r in runs})),
                topology="/".join(sorted({r.topology for r in runs})),
                n=len(runs),
                seeds=sorted((r.seed for r in runs), key=lambda s: (s is None, s)),
                dev_mean=dev_mean,
                dev_std=dev_std,
                test_mean=test_mean,
                test_std=test_std,
                parameters=max(params) if params else None,
                train_seconds=statistics.fmean(seconds) if seconds else None,
                epochs=statistics.fmean(epochs) if epochs else None,
            )
        )
    _compare_with_best(rows, groups, bootstrap_samples, seed)
    inf = float("inf")
    return sorted(rows, key=lambda r: (r.dev_mean if r.dev_mean is not None else inf, r.config))


def _pooled(runs: list[RunRecord]) -> dict[str, tuple[float, int]]:
    """The runs' per-utterance errors on SIGNIFICANCE_SPLIT, averaged over seeds."""
    paths = [run.path / "eval" / f"{SIGNIFICANCE_SPLIT}_hyp_ref.txt" for run in runs]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"no per-utterance file {missing[0]}")
    return pool_runs(paths)


def _compare_with_best(
    rows: list[Row], groups: dict[str, list[RunRecord]], samples: int, seed: int
) -> None:
    """Fill ``vs_best`` ... ``note`` of ``rows``: the best has the lowest mean test PER."""
    scored = [r for r in rows if r.test_mean is not None]
    if not scored:
        return
    best = min(scored, key=lambda r: (r.test_mean, r.config))
    best.vs_best = "best"
    try:
        best_errors = _pooled(groups[best.config])
    except (OSError, ValueError) as exc:
        best.note = str(exc)
        for row in scored:
            if row is not best:
                row.note = "the best configuration has no per-utterance errors to compare with"
        return
    for row in scored:
        if row is best:
            continue
        try:
            paired = pair_utterances(
                _pooled(groups[row.config]), best_errors, row.config, f"best ({best.config})"
            )
            test = mapsswe(paired.errors_a, paired.errors_b)
        except (OSError, ValueError) as exc:
            row.note = str(exc)
            continue
        interval = paired_bootstrap(
            paired.errors_a, paired.errors_b, paired.reference, samples=samples, seed=seed
        )
        row.vs_best = "yes" if test.p_value < ALPHA else "no"
        row.p_value = test.p_value
        row.diff_to_best = interval.difference
        row.diff_ci_low, row.diff_ci_high = interval.ci_low, interval.ci_high


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def _num(value: float | None, fmt: str = "{:.0f}") -> str:
    return "–" if value is None else fmt.format(value)


def _vs_best(row: Row) -> str:
    """``yes (p = 0.0012)``, ``no (p = 0.4100)``, ``best`` or ``–``."""
    if row.p_value is None:
        return row.vs_best
    p = "p < 0.0001" if row.p_value < 1e-4 else f"p = {row.p_value:.4f}"
    return f"{row.vs_best} ({p})"


def to_markdown(rows: list[Row], failed: list[RunRecord]) -> str:
    """A Markdown table of ``rows`` followed by the failed or unfinished runs."""
    lines = [
        "| configuration | rnn | topology | seeds | dev PER % | test PER % | parameters "
        f"| train s | epochs | differs from the best at p < {ALPHA:g} |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.config} | {r.rnn} | {r.topology} | {r.n} | {_pm(r.dev_mean, r.dev_std)} "
            f"| {_pm(r.test_mean, r.test_std)} | {_num(r.parameters, '{:,}')} "
            f"| {_num(r.train_seconds)} | {_num(r.epochs, '{:g}')} | {_vs_best(r)} |"
        )
    lines.append("")
    lines.append("PER: mean ± sample standard deviation over seeds (no ± with one seed).")
    lines.append(
        f"Differs from the best: NIST's matched-pairs test (MAPSSWE, utterances as segments) "
        f"on the {SIGNIFICANCE_SPLIT} utterances against the configuration with the lowest mean "
        f"{SIGNIFICANCE_SPLIT} PER, each configuration's per-utterance errors averaged over its "
        f"seeds; – without eval/{SIGNIFICANCE_SPLIT}_hyp_ref.txt files."
    )
    notes = [r for r in rows if r.note]
    if notes:
        lines += ["", "Not compared with the best:", ""]
        lines += [f"- {r.config}: {r.note}" for r in notes]
    if failed:
        lines += ["", f"Failed or unfinished runs ({len(failed)}):", ""]
        lines += [f"- `{f.path}` ({f.config}, seed {f.seed}): {f.reason}" for f in failed]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[Row], failed: list[RunRecord]) -> str:
    """CSV: one line per configuration, then one per failed run (``status`` column)."""
    out = io.StringIO()
    columns = [
        "status", "config", "rnn", "topology", "n", "seeds", "dev_mean", "dev_std", "test_mean",
        "test_std", "parameters", "train_seconds", "epochs", "path", "reason",
    ]  # fmt: skip
    # Against the best configuration on the test split (Row.vs_best ...), before "path".
    compared = {
        "test_differs_from_best": "vs_best",
        "test_p_value": "p_value",
        "test_diff_to_best": "diff_to_best",
        "test_diff_ci_low": "diff_ci_low",
        "test_diff_ci_high": "diff_ci_high",
        "test_note": "note",
    }
    columns[13:13] = list(compared)
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(
            {
                "status": "ok",
                **{k: getattr(r, k) for k in columns[1:13] if k != "seeds"},
                "seeds": " ".join(str(s) for s in r.seeds),
                **{column: getattr(r, name) for column, name in compared.items()},
            }
        )
    for f in failed:
        writer.writerow(
            {"status": f.status, "config": f.config, "rnn": f.rnn, "topology": f.topology,
             "n": 0, "seeds": f.seed, "path": str(f.path), "reason": f.reason}
        )  # fmt: skip
    return out.getvalue()


def plot(rows: list[Row], out_path: Path) -> Path:
    """Horizontal bars of mean dev and test PER per configuration, std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r.config if len(r.config) <= 60 else r.config[:57] + "..." for r in rows]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.6 * max(len(rows), 1)))
    height = 0.38
    for offset, (split, color) in enumerate((("dev", "tab:blue"), ("test", "tab:orange"))):
        means = [getattr(r, f"{split}_mean") or 0.0 for r in rows]
        stds = [getattr(r, f"{split}_std") or 0.0 for r in rows]
        ys = [i + (offset - 0.5) * height for i in range(len(rows))]
        ax.barh(ys, means, height, xerr=stds, capsize=3, color=color, label=f"{split} PER")
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("PER % (mean ± std over seeds)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path
