"""Weight averaging during training: an exponential moving average, or the last epochs' mean.

Both are Lightning :class:`~lightning.pytorch.callbacks.WeightAveraging` callbacks (a
:class:`torch.optim.swa_utils.AveragedModel` beside the trained one, batch-norm statistics
averaged with the weights). While an average exists, validation runs on it, so the dev PER
that picks ``best.ckpt`` is the averaged model's, and every checkpoint's ``state_dict`` holds the
averaged weights (the trained ones under ``current_model_state``, from which a resumed run goes
on). Evaluation, transcription and export of a checkpoint therefore use the average unchanged,
also a ``trainer.test(ckpt_path=...)`` after ``fit`` on the same trainer, as the recipe runs
(where Lightning's callback would load the trained weights: :class:`_EvaluatesTheCheckpoint`).

- :class:`EMAAveraging` (``averaging=ema``): after every optimizer step,
  ``average = decay * average + (1 - decay) * weights``.
- :class:`EpochAveraging` (``averaging=epochs``): the plain mean of the weights at the end of
  each of the last ``epochs`` epochs of the run (icefall's ``--avg``, done as the run goes:
  the epoch ``k`` of the window is validated as the mean of the window's epochs up to ``k``).

Under DDP every rank averages its own copy; rank 0's averaged batch-norm statistics are given to
all ranks before each validation, as :mod:`recipes.toolkit.run.buffers` does for trained ones.

>>> callback = EpochAveraging(epochs=3)  # train: averaging=epochs averaging.epochs=3
>>> callback.epochs, EMAAveraging(decay=0.999).update_starting_at_step
(3, None)
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging

from recipes.toolkit.run.buffers import broadcast_buffers


def _average(update):
    """An ``avg_fn`` of :class:`~torch.optim.swa_utils.AveragedModel` from ``update(average,
    current, count)``: where both tensors hold the same value the average keeps it (so a constant
    buffer of ``-inf``, such as a log-probability of zero, is not turned into ``nan`` by
    ``-inf - -inf``), and a tensor that is not floating point takes the current value (a count
    such as batch norm's ``num_batches_tracked``)."""

    def average(averaged: torch.Tensor, current: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        if not averaged.is_floating_point():
            return current
        return torch.where(averaged == current, averaged, update(averaged, current, count))

    return average


def _ema(decay: float):
    return _average(lambda averaged, current, count: decay * averaged + (1 - decay) * current)


_mean = _average(lambda averaged, current, count: averaged + (current - averaged) / (count + 1))


class _EvaluatesTheCheckpoint(WeightAveraging):
    """After ``fit`` the averaged copy is dropped, so that a later ``test`` / ``validate`` /
    ``predict`` with ``ckpt_path`` evaluates the checkpoint's ``state_dict`` (the average), as a
    fresh process would. Lightning keeps the copy, and on loading a checkpoint that has one
    it puts the trained weights (``current_model_state``) into the model instead."""

    def teardown(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        super().teardown(trainer, module, stage)
        if stage == "fit":
            self._average_model = None

    def on_load_checkpoint(self, trainer: L.Trainer, module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:  # fmt: skip
        if self._average_model is not None:  # fit (resuming): both states come back
            super().on_load_checkpoint(trainer, module, checkpoint)


class EMAAveraging(_EvaluatesTheCheckpoint):
    """Exponential moving average of the weights (and batch-norm statistics) after every step.

    Args:
        decay: weight of the average at each update; ``1 / (1 - decay)`` steps is its memory
            (0.99: about 100 steps).
        update_starting_at_step: first optimizer step (0-based) that updates the average.
    """

    def __init__(self, decay: float = 0.99, update_starting_at_step: int | None = None) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"averaging.decay must be in (0, 1), got {decay}")
        super().__init__(avg_fn=_ema(float(decay)))
        self.decay = float(decay)
        self.update_starting_at_step = update_starting_at_step

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        start = self.update_starting_at_step or 0
        return step_idx is not None and step_idx >= start

    def on_validation_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        super().on_validation_epoch_start(trainer, module)
        broadcast_buffers(module)


class EpochAveraging(_EvaluatesTheCheckpoint):
    """Mean of the weights at the end of each of the run's last ``epochs`` epochs.

    Before the window starts, nothing is averaged: validation and checkpoints see the trained
    weights. The window is counted back from ``trainer.max_epochs``; each epoch's weights join
    the mean before that epoch's validation (so validation must run every epoch).

    Args:
        epochs: how many final epochs to average (at least 1; 1 changes nothing).
    """

    def __init__(self, epochs: int = 5) -> None:
        if int(epochs) < 1:
            raise ValueError(f"averaging.epochs must be at least 1, got {epochs}")
        super().__init__(avg_fn=_mean)
        self.epochs = int(epochs)
        self._latest_averaged_epoch = -1
        self._swapped = False

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return False  # updated before validation instead (on_validation_epoch_start)

    def _averaged(self) -> bool:
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def on_validation_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or self._average_model is None:
            return
        epoch = trainer.current_epoch
        first = trainer.max_epochs - self.epochs
        if epoch >= first and epoch > self._latest_averaged_epoch:
            self._average_model.update_parameters(module)
            self._latest_averaged_epoch = epoch
        if self._averaged():
            self._swap_models(module)
            self._swapped = True
            broadcast_buffers(module)

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self._swapped:
            self._swap_models(module)
            self._swapped = False

    def on_save_checkpoint(self, trainer: L.Trainer, module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:  # fmt: skip
        if self._averaged():
            super().on_save_checkpoint(trainer, module, checkpoint)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self._averaged():
            super().on_train_end(trainer, module)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "latest_averaged_epoch": self._latest_averaged_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._latest_averaged_epoch = int(state_dict.get("latest_averaged_epoch", -1))
