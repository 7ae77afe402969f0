"""The "new-bob" learning-rate annealing on dev PER (as in pytorch-kaldi and SpeechBrain)."""

from dataclasses import dataclass


@dataclass
class NewBob:
    """Multiply the learning rate by ``factor`` when dev PER improves by less than ``threshold``.

    The improvement is relative: ``(previous best - current) / previous best``. ``patience``
    epochs without enough improvement are tolerated before annealing, and nothing is annealed
    during the first ``hold_epochs`` (a CTC model emits only blanks for its first epochs on a small
    corpus, and annealing then would freeze it there).

    Example:
        >>> newbob = NewBob(factor=0.5, threshold=0.0025)
        >>> [newbob.step(per, lr=1.0) for per in (40.0, 30.0, 29.99, 25.0)]
        [1.0, 1.0, 0.5, 1.0]
    """

    factor: float = 0.5
    threshold: float = 0.0025
    patience: int = 0
    hold_epochs: int = 0
    best: float | None = None
    waited: int = 0
    epochs: int = 0

    def step(self, metric: float, lr: float) -> float:
        """Return the learning rate to use after an epoch whose dev PER was ``metric``."""
        self.epochs += 1
        if self.epochs <= self.hold_epochs:
            self.best = metric if self.best is None else min(self.best, metric)
            return lr
        if self.best is None:
            self.best = metric
            return lr
        improvement = (self.best - metric) / max(self.best, 1e-12)
        self.best = min(self.best, metric)
        if improvement >= self.threshold:
            self.waited = 0
            return lr
        self.waited += 1
        if self.waited <= self.patience:
            return lr
        self.waited = 0
        return lr * self.factor

    def state_dict(self) -> dict:
        return {"best": self.best, "waited": self.waited, "epochs": self.epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.waited, self.epochs = state["best"], state["waited"], state["epochs"]
