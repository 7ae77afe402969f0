"""The data path's cost on the built-in corpus and on a 5-hour one, against its targets.

Per corpus (the recipe's default configuration with ``rnn=ligru``, as its README figures):

1. **preparation**: features of every split into a fresh cache with ``--workers`` processes,
   as a multiple of real time (audio seconds per wall second); target >= 1500x on 2 cores.
2. **memory**: a fresh process loads the corpus as a training run does (the data module's
   ``load``: cache verification, training statistics, label maps) and reads one epoch of
   training batches; its anonymous resident memory (``RssAnon``, what the process owns) after
   loading, and for comparison after holding every training utterance in memory as the first
   cache format did. Memory-mapped pages it has read are counted apart (``RssFile``): they are
   the page cache, shared by every rank and worker on the node. Target: ``RssAnon`` after
   loading of the large corpus within 10 % of the built-in one's.
3. **loading vs training**: one full epoch of training batches read and collated (what the
   DataLoader does, ``data.num_workers=0``), against the epoch's training time estimated from
   ``--steps`` timed training steps of the recipe (``scripts/bench_recipe.py``'s step);
   target < 2 %.

    python scripts/bench_features.py --workers 2 --json bench_features.json
    python scripts/bench_features.py --large-overrides data.generator.sentences_per_speaker=2

Corpora are generated once under ``--data-dir`` (default ``$RNNLIB_DATA_DIR``, else ``data/``);
the 5-hour one (``data.root=<data-dir>/builtin_timit_5h``, TIMIT's speaker counts, 14 sentences
each) takes about 5 minutes to generate and 300 MB of features.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recipe import REPO, Runner, compose_config, recipe_datamodule  # noqa: E402

from recipes.timit.builtin.generate import GeneratorParams, ensure_builtin_corpus  # noqa: E402
from recipes.timit.corpus import SAMPLE_RATE, read_timit  # noqa: E402
from recipes.toolkit.data.feature_config import FeatureConfig  # noqa: E402
from recipes.toolkit.data.features import prepare_features  # noqa: E402

LARGE = [
    "data.root=${paths.data_dir}/builtin_timit_5h",
    "data.generator.num_train_speakers=462",
    "data.generator.num_dev_speakers=50",
    "data.generator.num_test_speakers=24",
    "data.generator.sentences_per_speaker=14",
]
TARGETS = {"prep_x_real_time": 1500.0, "rss_anon_growth": 0.10, "loading_share": 0.02}


def memory_status() -> dict[str, int]:
    """``RssAnon``, ``RssFile`` and ``VmRSS`` of this process in bytes (Linux)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "VmRSS"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def ensure_corpus(cfg) -> tuple[Path, dict, float]:
    """The configuration's corpus (generated when missing), its splits and seconds of audio."""
    root = Path(str(cfg.data.root))
    known = GeneratorParams.__dataclass_fields__
    params = {k: int(v) for k, v in cfg.data.generator.items() if k in known}
    ensure_builtin_corpus(root, num_workers=int(cfg.prepare_workers), **params)
    splits = read_timit(root)
    audio = sum(u.num_samples for utts in splits.values() for u in utts) / SAMPLE_RATE
    return root, splits, audio


def child_memory(overrides: list[str], data_dir: Path, cache: Path) -> dict:
    """Run in a fresh process: memory after loading, after an epoch, after an in-memory copy."""
    cfg = compose_config("ligru", [*overrides, f"data.cache_dir={cache}"], data_dir)
    before = memory_status()
    datamodule = recipe_datamodule(cfg)
    datamodule.setup("fit")
    loaded = memory_status()
    for _ in datamodule.train_dataloader():
        pass
    epoch = memory_status()
    copies = [f.clone() for f in datamodule.load().splits["train"].feats]
    in_memory = memory_status()
    return {
        "before": before,
        "loaded": loaded,
        "epoch": epoch,
        "in_memory_copy": in_memory,
        "train_frames": sum(c.shape[0] for c in copies),
        "train_utterances": len(copies),
    }


def measure(label: str, overrides: list[str], args: argparse.Namespace) -> dict:
    data_dir = Path(args.data_dir).resolve()
    cfg = compose_config("ligru", overrides, data_dir)
    started = time.perf_counter()
    root, splits, audio = ensure_corpus(cfg)
    print(f"{label}: corpus {root} ready ({audio / 3600:.2f} h, "
          f"{time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    features = FeatureConfig.from_mapping(cfg.features)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".bench_features.") as cache:
        started = time.perf_counter()
        prepare_features(root, splits, features, Path(cache), args.workers)
        prep = time.perf_counter() - started

        command = [sys.executable, __file__, "--child", json.dumps(overrides), str(data_dir), cache]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        memory = json.loads(done.stdout.strip().splitlines()[-1])

        cfg = compose_config("ligru", [*overrides, f"data.cache_dir={cache}"], data_dir)
        datamodule = recipe_datamodule(cfg)
        datamodule.setup("fit")
        started = time.perf_counter()
        batches = []
        for batch in datamodule.train_dataloader():
            if len(batches) <= args.steps:  # kept for the timed steps below
                batches.append(batch)
        loading = time.perf_counter() - started
        count = len(datamodule.train_dataloader())
        runner = Runner("ligru", cfg, datamodule)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer to log to
            runner.step(batches[0], 0)  # warm-up
            started = time.perf_counter()
            for index, batch in enumerate(batches[1 : args.steps + 1]):
                runner.step(batch, index)
            step = (time.perf_counter() - started) / min(args.steps, len(batches) - 1)
    training = step * count
    return {
        "root": str(root),
        "hours": audio / 3600,
        "utterances": sum(len(u) for u in splits.values()),
        "prep_seconds": prep,
        "prep_x_real_time": audio / prep,
        "memory": memory,
        "epoch_batches": count,
        "epoch_loading_seconds": loading,
        "epoch_training_seconds": training,
        "loading_share": loading / training,
    }


def targets(table: dict) -> list[tuple[str, float, str, bool]]:
    """(row, measured, target, met) for every target of the benchmark."""
    small, large = table["builtin"], table["large"]
    rows = []
    for name, r in (("builtin", small), ("5-hour", large)):
        rows.append((f"preparation, {name} ({r['hours']:.2f} h)", r["prep_x_real_time"],
                     ">= 1500x real time", r["prep_x_real_time"] >= 1500))  # fmt: skip
    anon = [r["memory"]["loaded"]["RssAnon"] for r in (small, large)]
    growth = anon[1] / anon[0] - 1
    rows.append(("RssAnon after loading, 5-hour vs builtin", growth, "<= +10 %", growth <= 0.10))
    for name, r in (("builtin", small), ("5-hour", large)):
        rows.append((f"epoch loading / training, {name}", r["loading_share"], "< 2 %",
                     r["loading_share"] < 0.02))  # fmt: skip
    return rows


def format_table(table: dict) -> str:
    mib = 1 / 2**20
    header = f"{'corpus':8} {'hours':>6} {'utts':>6} {'prep s':>7} {'x real':>7} {'anon MiB':>9} "
    lines = [header + f"{'file MiB':>9} {'anon, copy':>10} {'load s':>7} {'train s':>8}"]
    for name in ("builtin", "large"):
        r = table[name]
        m = r["memory"]
        lines.append(
            f"{name:8} {r['hours']:6.2f} {r['utterances']:6d} {r['prep_seconds']:7.1f} "
            f"{r['prep_x_real_time']:7.0f} {m['loaded']['RssAnon'] * mib:9.0f} "
            f"{m['epoch']['RssFile'] * mib:9.0f} {m['in_memory_copy']['RssAnon'] * mib:10.0f} "
            f"{r['epoch_loading_seconds']:7.2f} {r['epoch_training_seconds']:8.0f}"
        )
    lines.append("")
    for row, value, target, met in targets(table):
        shown = f"{value:.0f}x" if "preparation" in row else f"{100 * value:+.1f} %"
        if "loading" in row:
            shown = f"{100 * value:.2f} %"
        lines.append(f"{row:48} {shown:>10}  target {target:18} {'met' if met else 'NOT MET'}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="feature preparation processes")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="Hydra overrides of both corpora")  # fmt: skip
    parser.add_argument("--large-overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="Hydra overrides of the large corpus (after LARGE)")  # fmt: skip
    parser.add_argument("--data-dir", default=os.environ.get("RNNLIB_DATA_DIR", str(REPO / "data")))
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child:
        overrides, data_dir, cache = args.child
        print(json.dumps(child_memory(json.loads(overrides), Path(data_dir), Path(cache))))
        return {}
    torch.set_num_threads(args.threads)
    table = {
        "workers": args.workers,
        "threads": args.threads,
        "builtin": measure("builtin", list(args.overrides), args),
        "large": measure("large", [*LARGE, *args.overrides, *args.large_overrides], args),
    }
    table["targets"] = [
        {"row": row, "value": value, "target": target, "met": met}
        for row, value, target, met in targets(table)
    ]
    print(format_table(table), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))
    return table


if __name__ == "__main__":
    main()
