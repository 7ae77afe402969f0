"""A restarted run continues with the settings its checkpoint was trained with, or stops.

Resuming restores the weights, the optimizer and scheduler states and the loops from the
checkpoint, whatever this start's command line says: a restart with ``optim.lr=0.1`` would be
recorded in ``.hydra/config.yaml`` yet train on with the saved learning rate, and one with
another ``rnn.hidden_size`` would fail deep inside Lightning. :class:`ResumeGuard` keeps the
run's resolved config in every checkpoint (``run_config``) and, before a resumed fit restores
anything, compares it with this start's: a changed key that is not a run-control key
(:data:`RUN_CONTROL_KEYS`) stops the run with a message naming it, unless
``resume_allow_changes=true`` (then a warning names it).

>>> changed_settings({"optim": {"lr": 0.002}, "trainer": {"max_epochs": 2}},
...                  {"optim": {"lr": 0.1}, "trainer": {"max_epochs": 3}})
{'optim.lr': (0.002, 0.1)}
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

# Where checkpoints keep the resolved config of the run that wrote them.
CONFIG_KEY = "run_config"

# Keys that may differ between a checkpoint's run and its restart (a key and everything under it):
# how long to train, where files live, how the run is logged and evaluated after training. They
# change no weight, optimizer step or batch of the training that continues.
RUN_CONTROL_KEYS = (
    "ckpt_path",  # what to resume from
    "resume_allow_changes",  # this switch itself
    "trainer.max_epochs",  # train longer (or stop sooner)
    "trainer.max_steps",
    "trainer.max_time",
    "paths",  # where corpora, caches and runs live (data.root, naming the corpus, is compared)
    "hydra",
    "task_name",  # names the default run directory only
    "data.cache_dir",  # where computed features are cached (their settings are compared)
    "trainer.default_root_dir",  # the run directory, derived from paths
    "callbacks.model_checkpoint.dirpath",
    "logger",  # where and how metrics are written
    "callbacks.lr_monitor",
    "callbacks.progress_bar",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "prepare_workers",  # processes computing the feature cache
    "eval_splits",  # splits scored after training
)


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


ABSENT = _Absent()


def is_run_control(key: str) -> bool:
    """Whether the dotted ``key`` is (under) one of :data:`RUN_CONTROL_KEYS`."""
    return any(key == k or key.startswith(k + ".") for k in RUN_CONTROL_KEYS)


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": leaf}`` for every leaf of nested mappings (lists are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def changed_settings(recorded: Mapping, current: Mapping) -> dict[str, tuple[Any, Any]]:
    """``{key: (recorded, current)}`` for every non-run-control key whose value differs."""
    old, new = flatten(recorded), flatten(current)
    keys = sorted(k for k in old.keys() | new.keys() if not is_run_control(k))
    changes = {k: (old.get(k, ABSENT), new.get(k, ABSENT)) for k in keys}
    return {k: (a, b) for k, (a, b) in changes.items() if a != b}


def recorded_settings(checkpoint: Mapping, current: Mapping) -> tuple[Mapping, Mapping]:
    """The checkpoint's recorded config and the part of ``current`` to compare it with.

    A checkpoint written before run configs were kept has only its model's hyperparameters
    (``rnn``, ``model``, ``optim``, ...): those groups are compared.
    """
    recorded = checkpoint.get(CONFIG_KEY)
    if recorded is not None:
        return recorded, current
    hparams = checkpoint.get("hyper_parameters") or {}
    recorded = {k: v for k, v in hparams.items() if k in current}
    return recorded, {k: current[k] for k in recorded}


def check_resume(
    checkpoint: Mapping, current: Mapping, allow_changes: bool, path: str | Path
) -> None:
    """Raise ``ValueError`` naming the settings ``current`` changes from ``checkpoint``'s run
    (a warning instead with ``allow_changes``)."""
    changes = changed_settings(*recorded_settings(checkpoint, current))
    if not changes:
        return
    listing = "\n".join(f"  {key}: {old!r} -> {new!r}" for key, (old, new) in changes.items())
    if allow_changes:
        log.warning(
            "resuming from %s with changed settings (resume_allow_changes=true):\n%s\n"
            "the checkpoint's weights, optimizer and scheduler states are restored as saved",
            path,
            listing,
        )
        return
    raise ValueError(
        f"cannot resume from {path}: this start changes settings the run was trained with\n"
        f"{listing}\n"
        "Resuming restores the checkpoint's weights, optimizer and scheduler states, so the run "
        "would not train with the new values its .hydra/config.yaml records. Start a new run in "
        "a new directory instead (another hydra.run.dir=..., or none for a fresh dated one), or "
        "ckpt_path=null to train from scratch here (replacing this run's checkpoints), or "
        "resume on purpose with resume_allow_changes=true."
    )


class ResumeGuard(L.Callback):
    """Keep the run's resolved config in its checkpoints; refuse to resume a checkpoint whose
    run had other settings (:func:`check_resume`), before the fit restores anything."""

    def __init__(self, cfg: DictConfig, resume_from: str | None = None) -> None:
        self.cfg = cfg
        self.resume_from = resume_from  # the checkpoint the fit resumes (None: a fresh start)

    def settings(self) -> dict[str, Any]:
        """This start's config, resolved, as plain data."""
        return OmegaConf.to_container(self.cfg, resolve=True)  # type: ignore[return-value]

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        path = self.resume_from
        if path is None or not Path(path).is_file():
            return  # nothing to resume (a missing explicit path is Lightning's to report)
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        allow = bool(self.cfg.get("resume_allow_changes", False))
        check_resume(checkpoint, self.settings(), allow, path)

    def on_save_checkpoint(
        self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CONFIG_KEY] = self.settings()
