"""Build the Lightning Trainer of a run from its config, and find the checkpoint to resume from."""

from __future__ import annotations

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from recipes.toolkit.run import ddp_launch
from recipes.toolkit.run.preemption import trainer_plugins
from recipes.toolkit.run.resume_guard import ResumeGuard
from recipes.toolkit.run.training_clock import TrainingClock


def build_trainer(cfg: DictConfig, resume_from: str | None = None, **overrides) -> L.Trainer:
    """Instantiate ``cfg.trainer`` with the configured callbacks and loggers (or ``overrides``).

    ``cfg.averaging`` (a weight-averaging callback, :mod:`recipes.toolkit.run.averaging`), when
    set, joins the callbacks. With them (a training run) come :class:`ResumeGuard`: checkpoints
    keep the run's config, and resuming ``resume_from`` (the checkpoint the fit will be given) with
    changed settings stops before training; and :class:`TrainingClock`, the training time summed
    over the run's starts.
    """
    if "callbacks" not in overrides:
        callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
        if cfg.get("averaging"):
            callbacks.append(instantiate(cfg.averaging))
        overrides["callbacks"] = [*callbacks, ResumeGuard(cfg, resume_from), TrainingClock()]
    if "logger" not in overrides:
        overrides["logger"] = [instantiate(c) for c in (cfg.get("logger") or {}).values()] or False
    overrides.setdefault("plugins", trainer_plugins(cfg.trainer.get("plugins")))
    ddp_launch.install()
    return instantiate(cfg.trainer, **overrides)
