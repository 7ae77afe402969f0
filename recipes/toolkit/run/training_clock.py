"""A run's training time across restarts: every checkpoint carries the seconds fitted so far."""

import logging
import time
from typing import Any

import lightning as L

log = logging.getLogger(__name__)


class TrainingClock(L.Callback):
    """Seconds spent in ``Trainer.fit``, summed over the starts of a run.

    A checkpoint stores the fitting time up to its save; a fit resumed from it starts counting
    there. So a run that was stopped and resumed (preemption, a SLURM requeue, a time limit)
    reports the time an uninterrupted run would have taken; the work done after the last
    checkpoint of a stopped start, which the next start repeats, is not counted twice.

    Example:
        >>> clock = TrainingClock()
        >>> clock.load_state_dict({"seconds": 12.5})
        >>> clock.seconds
        12.5
    """

    def __init__(self) -> None:
        self.carried = 0.0  # seconds of earlier starts, from the resumed checkpoint
        self.restored = False
        self.started: float | None = None  # time.monotonic() when this start's fit began

    @property
    def seconds(self) -> float:
        """Training seconds of the run so far: earlier starts and this one."""
        running = 0.0 if self.started is None else time.monotonic() - self.started
        return self.carried + running

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.started = time.monotonic()
        if trainer.ckpt_path and not self.restored:
            log.warning(
                "the checkpoint %s has no training time (written before this version): the "
                "run's train_seconds counts this start only", trainer.ckpt_path
            )  # fmt: skip

    def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.carried, self.started = self.seconds, None  # stopped: evaluation is not training

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.carried = float(state_dict["seconds"])
        self.restored = True
