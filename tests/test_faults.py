"""Faults: a SIGKILLed run started again ends like an uninterrupted one; torn checkpoints are
never resumed from; the same seed twice gives the same numbers (CPU, deterministic)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from recipes.toolkit.run.atomic import temporary_files
from recipes.toolkit.run.checkpoint_io import AtomicCheckpointIO
from recipes.toolkit.run.resume import newest_checkpoint, resume_checkpoint
from tests.kill_helpers import run_until_marker_then_kill
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


SAVE_THEN_DIE = """
import signal, sys
from pathlib import Path
import torch
from recipes.toolkit.run.checkpoint_io import AtomicCheckpointIO

last, marker = Path(sys.argv[1]), Path(sys.argv[2])

def save_half_then_wait(obj, handle, *args, **kwargs):
    handle.write(b"PK\\x03\\x04 half a checkpoint")
    handle.flush()
    marker.write_text("saving")
    signal.pause()  # killed here, in the middle of the write

torch.save = save_half_then_wait
AtomicCheckpointIO().save_checkpoint({"global_step": 20, "epoch": 2}, last)
"""


def test_sigkill_while_saving_leaves_the_old_checkpoint_and_a_temporary_the_next_run_removes(
    tmp_path, caplog
):
    last = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_ckpt(10), last)
    marker = tmp_path / "marker"
    run_until_marker_then_kill(SAVE_THEN_DIE, [str(last), str(marker)], marker, tmp_path / "log")
    left = sorted(p.name for p in last.parent.iterdir())
    assert len(left) == 2 and left[1] == "last.ckpt", left  # the old one and the torn temporary
    (temporary,) = temporary_files(last.parent)
    assert temporary.name.startswith(".last.ckpt.")
    assert torch.load(last, weights_only=True)["global_step"] == 10  # untouched
    with caplog.at_level(logging.WARNING, logger="recipes"):
        assert resume_checkpoint("auto", tmp_path) == str(last)
    assert f"removing {temporary}" in caplog.text
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]


def test_a_torn_checkpoint_is_never_resumed_from(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(_ckpt(10), last)
    (tmp_path / "hpc_ckpt_1.ckpt").write_bytes(b"PK\x03\x04 torn")  # e.g. a non-atomic copy
    with pytest.warns(UserWarning, match="unloadable checkpoint"):
        assert newest_checkpoint(tmp_path) == last


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
    proc.send_signal(signal.SIGKILL)  # as soon as epoch 0's checkpoint is there: in epoch 1
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before the kill"
    assert not (run_dir / "results.json").exists()
    assert torch.load(newest_checkpoint(run_dir), weights_only=False)["epoch"] == 0
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} <= {"last.ckpt", "best.ckpt"}
    done = run_entry("train", OVERRIDES, data_dir, run_dir)  # the same command again
    assert "Restoring states from the checkpoint" in done.stdout + done.stderr
    assert _metrics(run_dir) == _metrics(reference_run)
    rows = (run_dir / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    epochs = [r.split(",")[header.index("epoch")] for r in rows[1:]
              if r.split(",")[header.index("dev_per")]]  # fmt: skip
    assert epochs == ["0", "1", "2", "3"]  # the curves of both starts, each epoch once
