"""Pick the checkpoint a restarted run resumes from; keep RNG states in checkpoints and the
learning curves of the earlier starts in ``metrics.csv``.

A run directory may hold ``checkpoints/last.ckpt`` (written at every validation, i.e. epoch end)
and Lightning's ``hpc_ckpt_<n>.ckpt`` (written on a SLURM preemption or time-limit signal). A
restarted run resumes from the one that got furthest (global step, then epoch, then mtime);
files that fail to load (torn by a kill, truncated copies) are skipped with a warning.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from recipes.toolkit.run.atomic import atomic_write_text, temporary_files
from recipes.toolkit.run.lightning_internals import collect_rng_states, set_rng_states

log = logging.getLogger(__name__)


def candidates(run_dir: Path) -> list[Path]:
    """``checkpoints/last.ckpt`` and every ``hpc_ckpt_*.ckpt`` of ``run_dir`` that exist."""
    found = sorted(run_dir.glob("hpc_ckpt_*.ckpt"))
    last = run_dir / "checkpoints" / "last.ckpt"
    return ([last] if last.is_file() else []) + found


def progress(path: Path) -> tuple[int, int, float] | None:
    """``(global_step, epoch, mtime)`` of a loadable checkpoint, ``None`` when it does not load."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        return int(ckpt["global_step"]), int(ckpt["epoch"]), path.stat().st_mtime
    except Exception as error:  # noqa: BLE001 - any unreadable file is skipped
        warnings.warn(f"ignoring unloadable checkpoint {path}: {error}", stacklevel=2)
        return None


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The loadable checkpoint of ``run_dir`` that got furthest, or ``None``."""
    scored = [(p, progress(p)) for p in candidates(run_dir)]
    scored = [(p, s) for p, s in scored if s is not None]
    if not scored:
        return None
    best = max(scored, key=lambda item: item[1])[0]
    log.info("resuming from %s", best)
    return best


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Remove (logged) the temporary files a killed checkpoint write left in ``run_dir`` and
    ``run_dir/checkpoints``; call it only before this run writes any checkpoint."""
    stale = [p for folder in (run_dir, run_dir / "checkpoints") for p in temporary_files(folder)]
    for path in stale:
        log.warning("removing %s, a checkpoint write interrupted by a kill", path)
        path.unlink(missing_ok=True)
    return stale


def resume_checkpoint(ckpt_path: str | None, run_dir: Path) -> str | None:
    """``auto``: the newest loadable last.ckpt / hpc_ckpt_* of ``run_dir`` (after removing what
    an interrupted checkpoint write left); ``none``: start anew."""
    if ckpt_path in (None, "none"):
        return None
    if ckpt_path == "auto":
        remove_stale_temporaries(run_dir)
        newest = newest_checkpoint(run_dir)
        return str(newest) if newest else None
    return str(ckpt_path)


class RNGStateCheckpoint(L.Callback):
    """Store the process's torch/numpy/random (and CUDA) RNG states in checkpoints, restore them.

    Lightning's Trainer does not, so dropout after a resume would differ from an uninterrupted
    run. Only rank 0 writes checkpoints: under DDP the other ranks get rank 0's states back.
    """

    def on_save_checkpoint(self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict):
        states = collect_rng_states(include_cuda=torch.cuda.is_available())
        kind, keys, pos, has_gauss, gauss = states["numpy"]  # tensors load with weights_only
        states["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
        checkpoint["rng_states"] = states

    def on_load_checkpoint(
        self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = checkpoint.get("rng_states")
        if states is not None:
            states = dict(states)
            if not torch.cuda.is_available():
                states.pop("torch.cuda", None)
            kind, keys, pos, has_gauss, gauss = states["numpy"]
            states["numpy"] = (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)
            set_rng_states(states)


class ResumableCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger`` that keeps the rows an earlier start of the run wrote.

    Lightning's writer deletes ``metrics.csv`` as soon as it finds its folder not empty, so a
    run started again in its directory lost the learning curves of every epoch before the
    restart (and a start that failed before logging anything lost them too). This logger's
    writer keeps the file; its first write drops only the earlier rows from the first step it
    logs on (the steps the resumed run logs again: the loops resume at the checkpoint's step),
    so every row is there once. A start from scratch (first step 0) replaces the file.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment


class _KeepingWriter(ExperimentWriter):
    """Lightning's CSV writer, continuing the ``metrics.csv`` of an earlier start (see above)."""

    def _check_log_dir_exists(self) -> None:  # Lightning's deletes metrics.csv: read it instead
        self.earlier = _read_csv(Path(self.metrics_file_path))

    def save(self) -> None:
        if self.earlier is not None and self.metrics:
            header, rows = self.earlier
            first = min(int(row["step"]) for row in self.metrics)
            kept = [row for row in rows if _step(row) is not None and _step(row) < first]
            self.metrics_keys = sorted(set(header).union(*self.metrics))
            text = io.StringIO(newline="")
            writer = csv.DictWriter(text, fieldnames=self.metrics_keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
            atomic_write_text(self.metrics_file_path, text.getvalue())
            self.earlier = None
        super().save()  # appends this start's rows under the header written above


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]] | None:
    """Header and rows of ``path``, ``None`` when there is no such file."""
    if not path.is_file():
        return None
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _step(row: dict[str, str]) -> int | None:
    """The step of a row read back, ``None`` for a row torn by a kill (fields missing)."""
    if None in row.values():
        return None
    try:
        return int(float(row["step"]))
    except (KeyError, TypeError, ValueError):
        return None
