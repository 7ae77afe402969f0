"""Build the Lightning Trainer of a run from its config, and find the checkpoint to resume from."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from recipes.toolkit.run import ddp_launch
from recipes.toolkit.run.preemption import trainer_plugins
from recipes.toolkit.run.resume import newest_checkpoint


def build_trainer(cfg: DictConfig, **overrides) -> L.Trainer:
    """Instantiate ``cfg.trainer`` with the configured callbacks and loggers (or ``overrides``)."""
    if "callbacks" not in overrides:
        overrides["callbacks"] = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    if "logger" not in overrides:
        overrides["logger"] = [instantiate(c) for c in (cfg.get("logger") or {}).values()] or False
    overrides.setdefault("plugins", trainer_plugins(cfg.trainer.get("plugins")))
    ddp_launch.install()
    return instantiate(cfg.trainer, **overrides)


def resume_checkpoint(ckpt_path: str | None, run_dir: Path) -> str | None:
    """``auto``: the newest loadable last.ckpt / hpc_ckpt_* of ``run_dir``; ``none``: start anew."""
    if ckpt_path in (None, "none"):
        return None
    if ckpt_path == "auto":
        newest = newest_checkpoint(run_dir)
        return str(newest) if newest else None
    return str(ckpt_path)
