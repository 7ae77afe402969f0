"""Restarts in a run directory: the learning curves and the training time of the earlier starts
stay in the run's records, and a restart with changed settings stops (naming them) instead of
training on with the old ones."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import pytest
import torch

from recipes.toolkit.run.resume import ResumableCSVLogger
from recipes.toolkit.run.resume_guard import changed_settings, check_resume
from tests.recipe_helpers import SMALL_CORPUS, results, run_entry

TINY = [*SMALL_CORPUS, "rnn.hidden_size=32", "rnn.num_layers=2"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _log(logger: ResumableCSVLogger, steps: range, epoch: int, **metrics: float) -> None:
    for step in steps:
        logger.log_metrics({"epoch": epoch, **metrics}, step=step)
        logger.save()


def test_csv_logger_keeps_the_rows_of_an_earlier_start(tmp_path):
    metrics_csv = tmp_path / "csv" / "metrics.csv"
    first = ResumableCSVLogger(tmp_path, name="csv", version="")
    _log(first, range(0, 6), epoch=0, loss=1.0)
    first.finalize("success")
    before = metrics_csv.read_bytes()
    refused = ResumableCSVLogger(tmp_path, name="csv", version="")  # a start that logs nothing
    assert refused.experiment.metrics == []
    refused.finalize("failed")
    assert metrics_csv.read_bytes() == before
    resumed = ResumableCSVLogger(tmp_path, name="csv", version="")
    _log(resumed, range(4, 8), epoch=1, loss=2.0, per=9.0)  # resumes at step 4: 4 and 5 again
    resumed.finalize("success")
    rows = _rows(metrics_csv)
    assert [r["step"] for r in rows] == [str(s) for s in range(8)]
    assert [r["epoch"] for r in rows] == ["0"] * 4 + ["1"] * 4
    assert [r["per"] for r in rows] == [""] * 4 + ["9.0"] * 4  # a new column for all rows
    scratch = ResumableCSVLogger(tmp_path, name="csv", version="")
    _log(scratch, range(0, 2), epoch=0, loss=3.0)  # a start from scratch replaces the rows
    assert [(r["step"], r["loss"]) for r in _rows(metrics_csv)] == [("0", "3.0"), ("1", "3.0")]


def test_run_control_keys_may_change_settings_may_not():
    recorded = {"optim": {"lr": 0.002}, "trainer": {"max_epochs": 2, "gradient_clip_val": 5.0}}
    allowed = {
        "optim": {"lr": 0.002},
        "trainer": {"max_epochs": 9, "gradient_clip_val": 5.0},
        "ckpt_path": "/elsewhere/last.ckpt",
        "paths": {"data_dir": "/moved"},
        "eval_splits": ["test"],
        "prepare_workers": 8,
    }
    assert changed_settings(recorded, allowed) == {}
    changed = {**allowed, "optim": {"lr": 0.1}, "seed": 3}
    assert {k: v[1] for k, v in changed_settings(recorded, changed).items()} == {
        "optim.lr": 0.1,
        "seed": 3,  # new keys count too
    }


def test_check_resume_names_the_changes_or_warns_when_allowed(caplog):
    checkpoint = {"run_config": {"optim": {"lr": 0.002}, "rnn": {"hidden_size": 32}}}
    current = {"optim": {"lr": 0.1}, "rnn": {"hidden_size": 64}}
    with pytest.raises(ValueError, match="resume_allow_changes=true") as error:
        check_resume(checkpoint, current, allow_changes=False, path="last.ckpt")
    assert "optim.lr: 0.002 -> 0.1" in str(error.value)
    assert "rnn.hidden_size: 32 -> 64" in str(error.value)
    assert "hydra.run.dir=" in str(error.value) and "ckpt_path=null" in str(error.value)
    with caplog.at_level(logging.WARNING, logger="recipes"):
        check_resume(checkpoint, current, allow_changes=True, path="last.ckpt")
    assert "optim.lr: 0.002 -> 0.1" in caplog.text and "resume_allow_changes=true" in caplog.text
    check_resume(checkpoint, checkpoint["run_config"], allow_changes=False, path="last.ckpt")


def test_a_checkpoint_without_run_config_is_checked_on_its_hyperparameters():
    checkpoint = {"hyper_parameters": {"optim": {"lr": 0.002}, "phones": ["aa"], "feature_dim": 40}}
    with pytest.raises(ValueError, match=r"optim\.lr: 0\.002 -> 0\.1"):
        check_resume(checkpoint, {"optim": {"lr": 0.1}, "seed": 1}, False, "old.ckpt")
    check_resume(checkpoint, {"optim": {"lr": 0.002}, "seed": 1}, False, "old.ckpt")


@pytest.mark.slow
def test_resumed_run_keeps_the_learning_curves_and_training_time_of_the_earlier_epochs(
    data_dir, tmp_path
):
    run_dir, reference = tmp_path / "resumed", tmp_path / "reference"
    run_entry("train", [*TINY, "trainer.max_epochs=2"], data_dir, run_dir)
    first = results(run_dir)["train_seconds"]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    carried = next(v["seconds"] for k, v in checkpoint["callbacks"].items() if "Clock" in k)
    assert 0 < carried <= first
    started = time.monotonic()
    done = run_entry("train", [*TINY, "trainer.max_epochs=3"], data_dir, run_dir)
    wall = time.monotonic() - started
    assert "Restoring states from the checkpoint" in done.stdout + done.stderr
    assert carried < results(run_dir)["train_seconds"] < carried + wall  # both starts, no more
    rows = _rows(run_dir / "csv" / "metrics.csv")
    for column in ("train_loss_epoch", "dev_per"):
        assert [r["epoch"] for r in rows if r[column]] == ["0", "1", "2"], column
    lr_column = next(k for k in rows[0] if k.startswith("lr-"))  # logged once an epoch
    assert len([r for r in rows if r[lr_column]]) == 3, rows
    run_entry("train", [*TINY, "trainer.max_epochs=3"], data_dir, reference)
    assert rows == _rows(reference / "csv" / "metrics.csv")  # as if never stopped


@pytest.mark.slow
def test_restart_with_changed_settings_stops_unless_allowed(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    tiny = [*TINY, "optim.lr=0.003"]
    run_entry("train", [*tiny, "trainer.max_epochs=1"], data_dir, run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    saved, curves = last.read_bytes(), (run_dir / "csv" / "metrics.csv").read_bytes()
    changed = [*TINY, "optim.lr=0.1", "trainer.max_epochs=2"]
    done = run_entry("train", changed, data_dir, run_dir, check=False)
    assert done.returncode != 0
    assert "optim.lr: 0.003 -> 0.1" in done.stderr and "resume_allow_changes=true" in done.stderr
    assert "trainer.max_epochs" not in done.stderr.split("ValueError")[-1]
    assert last.read_bytes() == saved and (run_dir / "csv" / "metrics.csv").read_bytes() == curves
    longer = run_entry("train", [*tiny, "trainer.max_epochs=2"], data_dir, run_dir)
    assert "Restoring states from the checkpoint" in longer.stdout + longer.stderr
    assert results(run_dir)["epochs"] == 2
    on_purpose = [*changed[:-1], "trainer.max_epochs=3", "resume_allow_changes=true"]
    allowed = run_entry("train", on_purpose, data_dir, run_dir)
    output = allowed.stdout + allowed.stderr
    assert "changed settings" in output and "optim.lr: 0.003 -> 0.1" in output
    assert results(run_dir)["epochs"] == 3
    assert torch.load(last, weights_only=False)["run_config"]["optim"]["lr"] == 0.1
