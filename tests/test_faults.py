"""Faults: a SIGKILLed run started again ends like an uninterrupted one; torn checkpoints are
never resumed from; the same seed twice gives the same numbers (CPU, deterministic)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from recipes.toolkit.run.checkpoint_io import AtomicCheckpointIO
from recipes.toolkit.run.resume import newest_checkpoint
from tests.recipe_helpers import REPO, SMALL_CORPUS, results, run_entry

OVERRIDES = [*SMALL_CORPUS, "rnn.hidden_size=32", "rnn.num_layers=2", "trainer.max_epochs=4"]
VOLATILE = ("run_dir", "best_checkpoint", "train_seconds")


def _metrics(run_dir: Path) -> dict:
    return {k: v for k, v in results(run_dir).items() if k not in VOLATILE}


def _ckpt(step: int) -> dict:
    return {"global_step": step, "epoch": step // 10, "state_dict": {"w": torch.ones(3)}}


def test_resume_prefers_the_checkpoint_that_got_furthest(tmp_path):
    io = AtomicCheckpointIO()
    io.save_checkpoint(_ckpt(10), tmp_path / "checkpoints" / "last.ckpt")
    io.save_checkpoint(_ckpt(12), tmp_path / "hpc_ckpt_1.ckpt")
    assert newest_checkpoint(tmp_path) == tmp_path / "hpc_ckpt_1.ckpt"
    io.save_checkpoint(_ckpt(20), tmp_path / "checkpoints" / "last.ckpt")
    assert newest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last.ckpt"
    assert newest_checkpoint(tmp_path / "nothing") is None


def test_kill_while_saving_leaves_a_loadable_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    last = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint(_ckpt(10), last)
    real_save = torch.save

    def dies_half_way(obj, fh, *args, **kwargs):
        fh.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint(_ckpt(20), last)
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no temp file left
    # a checkpoint torn by a non-atomic writer (e.g. a copy) is skipped with a warning
    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(b"PK\x03\x04 torn")
    with pytest.warns(UserWarning, match="unloadable checkpoint"):
        assert newest_checkpoint(tmp_path) == last
    assert torch.load(last, weights_only=True)["global_step"] == 10


@pytest.fixture(scope="module")
def reference_run(data_dir, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("reference")
    run_entry("train", OVERRIDES, data_dir, run_dir)
    return run_dir


@pytest.mark.slow
def test_same_seed_twice_gives_identical_results(reference_run, data_dir, tmp_path):
    run_entry("train", OVERRIDES, data_dir, tmp_path / "again")
    assert _metrics(tmp_path / "again") == _metrics(reference_run)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_restart_ends_like_an_uninterrupted_run(
    reference_run, data_dir, tmp_path
):
    run_dir = tmp_path / "killed"
    command = [sys.executable, "-m", "recipes.timit.train", *OVERRIDES, f"hydra.run.dir={run_dir}"]
    env = dict(os.environ, RNNLIB_DATA_DIR=str(data_dir))
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # after epoch 0's checkpoint, inside a later epoch
    proc.wait()
    assert not (run_dir / "results.json").exists(), "the run finished before the kill"
    killed_at = torch.load(newest_checkpoint(run_dir), weights_only=False)["epoch"]
    done = run_entry("train", OVERRIDES, data_dir, run_dir)  # the same command again
    assert "Restoring states from the checkpoint" in done.stdout + done.stderr
    assert killed_at < 4
    assert _metrics(run_dir) == _metrics(reference_run)
