"""Two real processes (gloo on CPU): sharding, evaluation and a whole DDP training run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.recipe_helpers import REPO, SMALL_CORPUS, results, run_entry

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

TINY_MODEL = ["rnn.hidden_size=32", "rnn.num_layers=1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _shard_worker(rank: int, world: int, port: int, data_cfg: dict, out: str) -> None:
    """Both ranks prepare the corpus at once (fresh cache), then record what they would load."""
    from recipes.timit.data import timit_datamodule

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    dm = timit_datamodule(data_cfg, {"num_mel_bins": 23}, seed=3)
    dm.trainer = SimpleNamespace(global_rank=rank, world_size=world)
    seen: dict = {"num_train": len(dm.dataset("train"))}
    for epoch in (0, 1):
        loader = dm.train_dataloader()
        loader.batch_sampler.set_epoch(epoch)
        seen[f"train{epoch}"] = [batch["utt_ids"] for batch in loader]
    seen["dev"] = [batch["utt_ids"] for batch in dm.val_dataloader()]
    gathered: list = [None] * world
    dist.all_gather_object(gathered, seen)
    if rank == 0:
        Path(out).write_text(json.dumps(gathered))
    dist.destroy_process_group()


def test_ranks_get_disjoint_utterances_and_equal_batch_counts(tiny_data_cfg, tmp_path):
    data_cfg = dict(tiny_data_cfg, max_frames=1200, score_phones=39)
    out = tmp_path / "seen.json"
    mp.start_processes(
        _shard_worker, args=(2, _free_port(), data_cfg, str(out)), nprocs=2, start_method="spawn"
    )
    ranks = json.loads(out.read_text())
    for key in ("train0", "train1"):
        batches = [r[key] for r in ranks]
        assert len(batches[0]) == len(batches[1]) > 1, key  # same number of steps per rank
        utts = [{u for b in r for u in b} for r in batches]
        assert not utts[0] & utts[1], key
        assert len(utts[0] | utts[1]) == ranks[0]["num_train"], key
    assert ranks[0]["train0"] != ranks[0]["train1"]  # reshuffled per epoch
    dev = [[u for b in r["dev"] for u in b] for r in ranks]
    assert all(dev) and not set(dev[0]) & set(dev[1])
    assert len(dev[0]) + len(dev[1]) == len(set(dev[0]) | set(dev[1]))  # no repetition


@pytest.fixture(scope="module", params=["train", "train_framewise"])
def checkpoint(request, data_dir, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("single")
    overrides = [*SMALL_CORPUS, *TINY_MODEL, "trainer.max_epochs=2"]
    run_entry(request.param, overrides, data_dir, run_dir)
    return run_dir / "checkpoints" / "best.ckpt"


def test_two_process_eval_gives_the_single_process_per(checkpoint, data_dir, tmp_path):
    """Every score of either task (PER, frame and boundary accuracy) is the single-process one."""
    per = {}
    for trainer in ("cpu", "ddp_cpu"):
        overrides = [f"ckpt_path={checkpoint}", "split=dev", f"trainer={trainer}", *SMALL_CORPUS]
        run_entry("eval", overrides, data_dir, tmp_path / trainer)
        per[trainer] = results(tmp_path / trainer)["eval"]["dev"]
        lines = (tmp_path / trainer / "eval" / "dev_hyp_ref.txt").read_text().count("REF:")
        assert lines == 6, trainer  # every dev utterance decoded exactly once
    assert per["ddp_cpu"] == per["cpu"]


def _run(
    args: list[str], data_dir: Path, log_dir: Path, entry: str = "train"
) -> subprocess.CompletedProcess:
    env = dict(
        os.environ, RNNLIB_DATA_DIR=str(data_dir), RNNLIB_LOG_DIR=str(log_dir), PYTHONUNBUFFERED="1"
    )
    command = [sys.executable, "-m", f"recipes.timit.{entry}", *args]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "csv" not in p.parts}


@pytest.mark.parametrize("entry", ["train", "train_framewise"])
def test_two_process_training_writes_one_run_directory(entry, data_dir, tmp_path):
    log_dir = tmp_path / "logs"  # where a stray ${now:...} directory would land
    run_dir = tmp_path / "run"
    overrides = [*SMALL_CORPUS, *TINY_MODEL, "trainer=ddp_cpu", "trainer.max_epochs=1"]
    done = _run([*overrides, f"hydra.run.dir={run_dir}"], data_dir, log_dir, entry)
    assert not log_dir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert done.stdout.count("run directory:") == 1
    files = _tree(run_dir)
    assert {"results.json", "run_info.json", ".hydra/config.yaml", "checkpoints/last.ckpt"} <= files
    assert [f for f in files if f.endswith(".log")] == [f"{entry}.log"]
    assert results(run_dir)["eval"]["dev"]["phones"] > 0


def test_two_process_sweep_job_runs_once(data_dir, tmp_path):
    """Under ``-m`` Lightning's children must not re-run the sweep nor resolve ${now:} again."""
    log_dir = tmp_path / "logs"
    overrides = [*SMALL_CORPUS, *TINY_MODEL, "trainer=ddp_cpu", "trainer.max_epochs=1"]
    _run(["-m", *overrides, "seed=5"], data_dir, log_dir)
    sweeps = list((log_dir / "timit_ctc" / "multiruns").iterdir())
    assert len(sweeps) == 1 and not (log_dir / "timit_ctc" / "runs").exists()
    assert sorted(p.name for p in sweeps[0].iterdir()) == ["0", "multirun.yaml"]
    assert json.loads((sweeps[0] / "0" / "results.json").read_text())["eval"]["dev"]["phones"] > 0
