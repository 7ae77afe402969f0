"""SLURM preemption and time limits: checkpoint on the signal, requeue, resume by itself.

Submitit (Hydra's SLURM launcher) submits with ``--signal=USR2@<signal_delay_s>`` and handles
USR2 itself (requeue, then exit), while Lightning's SLURMEnvironment listens on USR1 and does not
take a signal that already has a handler. So: under SLURM the Trainer gets
``SLURMEnvironment(requeue_signal=SIGUSR2)`` (plain ``sbatch --signal=USR2@90`` scripts: Lightning
saves ``hpc_ckpt_<n>.ckpt`` and requeues), and :class:`CheckpointOnPreemption` puts a checkpoint
save in front of a foreign USR2 handler (submitit: save, then submitit requeues and exits). The
requeued job starts in the same run directory and ``ckpt_path=auto`` resumes from the newest
checkpoint (:mod:`recipes.toolkit.run.resume`).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterable
from types import FrameType
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.plugins.environments import SLURMEnvironment

from recipes.toolkit.run.lightning_internals import hpc_save_path, is_lightning_signal_handler

log = logging.getLogger(__name__)

REQUEUE_SIGNAL = signal.SIGUSR2


def trainer_plugins(configured: Iterable[Any] | None) -> list[Any]:
    """Instantiate the configured Trainer plugins; add the SLURM environment under SLURM."""
    plugins = [instantiate(p) for p in (configured or [])]
    if SLURMEnvironment.detect() and not any(isinstance(p, SLURMEnvironment) for p in plugins):
        plugins.append(SLURMEnvironment(requeue_signal=REQUEUE_SIGNAL))
    return plugins


class CheckpointOnPreemption(L.Callback):
    """Under SLURM, save ``hpc_ckpt_<n>.ckpt`` before a foreign USR2 handler (submitit's) runs."""

    def __init__(self, signum: int = REQUEUE_SIGNAL) -> None:
        self.signum = signal.Signals(signum)
        self._previous: Any = None

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not SLURMEnvironment.detect():
            return
        previous = signal.getsignal(self.signum)
        if is_lightning_signal_handler(previous) or not callable(previous):
            return  # Lightning's own handler (or none): it checkpoints and requeues itself
        self._previous = previous

        def save_then_delegate(signum: int, frame: FrameType | None) -> None:
            path = hpc_save_path(trainer)
            log.warning("caught %s: saving %s before requeue", self.signum.name, path)
            trainer.save_checkpoint(path)
            previous(signum, frame)

        signal.signal(self.signum, save_then_delegate)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self._previous is not None:
            signal.signal(self.signum, self._previous)
            self._previous = None
