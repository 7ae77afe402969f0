"""Pick the checkpoint a restarted run resumes from; keep RNG states in checkpoints.

A run directory may hold ``checkpoints/last.ckpt`` (written at every validation, i.e. epoch end)
and Lightning's ``hpc_ckpt_<n>.ckpt`` (written on a SLURM preemption or time-limit signal). A
restarted run resumes from the one that got furthest (global step, then epoch, then mtime);
files that fail to load (torn by a kill, truncated copies) are skipped with a warning.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

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
