"""Weight averaging callbacks on a real Lightning trainer: what validation and checkpoints see."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from recipes.toolkit.run.averaging import EMAAveraging, EpochAveraging


class Regression(L.LightningModule):
    """One weight fitted by SGD; validation logs the weight it is run with."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        # A constant buffer with a log-probability of zero, as a decoder's bigram holds.
        self.register_buffer("log_prior", torch.tensor([0.0, -math.inf]))
        self.validated: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return ((self.weight * x - y) ** 2).mean()

    def validation_step(self, batch, batch_idx):  # one batch per validation
        self.validated.append(float(self.weight))
        self.log("val", self.weight.detach().sum())

    def test_step(self, batch, batch_idx):
        self.log("test", self.weight.detach().sum())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


class Recorder(L.Callback):
    """The trained weight after every step and at the start of every validation."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.epochs: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.steps.append(float(module.weight.detach()))

    def on_validation_epoch_start(self, trainer, module) -> None:
        self.epochs.append(float(module.weight.detach()))


class StopAfter(L.Callback):
    """Ends the fit after epoch ``epoch`` (0-based), as a killed run's last checkpoint would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, module) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def loaders():
    x = torch.linspace(0.5, 2.0, 8).unsqueeze(1)
    data = TensorDataset(x, 3.0 * x)
    return DataLoader(data, batch_size=2), DataLoader(data, batch_size=8)


def fit(tmp_path, averaging, max_epochs=4, ckpt_path=None, stop_after=None, keep_trainer=False):
    recorder = Recorder()
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(tmp_path, save_top_k=-1, filename="{epoch}")
    callbacks = [recorder, averaging, checkpoints]
    if stop_after is not None:
        callbacks.append(StopAfter(stop_after))
    trainer = L.Trainer(max_epochs=max_epochs, callbacks=callbacks,
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, default_root_dir=tmp_path)  # fmt: skip
    module = Regression()
    train, dev = loaders()
    trainer.fit(module, train, dev, ckpt_path=ckpt_path)
    return (module, recorder, trainer) if keep_trainer else (module, recorder)


def saved(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_epoch_averaging_validates_and_saves_the_mean_of_the_last_epochs(tmp_path):
    module, recorder = fit(tmp_path, EpochAveraging(epochs=2), max_epochs=4)
    trained = recorder.epochs
    assert module.validated[:3] == pytest.approx(trained[:3], abs=0)  # before and at the window
    assert module.validated[3] == pytest.approx((trained[2] + trained[3]) / 2, rel=1e-6)
    assert trained[2] != pytest.approx(trained[3], rel=1e-3)  # the mean is not a copy
    first = saved(tmp_path / "epoch=1.ckpt")
    assert "current_model_state" not in first  # nothing averaged yet
    assert float(first["state_dict"]["weight"]) == pytest.approx(trained[1], abs=0)
    last = saved(tmp_path / "epoch=3.ckpt")
    assert float(last["state_dict"]["weight"]) == pytest.approx(module.validated[3], rel=1e-6)
    assert float(last["current_model_state"]["weight"]) == pytest.approx(trained[3], abs=0)
    assert float(module.weight) == pytest.approx(module.validated[3], rel=1e-6)  # after fit


@pytest.mark.parametrize("make", [lambda: EpochAveraging(epochs=3), lambda: EMAAveraging(0.9)])
def test_evaluating_a_checkpoint_after_fit_uses_its_average(make, tmp_path):
    """The recipe tests best.ckpt on the trainer that fitted: the average must be evaluated."""
    module, recorder, trainer = fit(tmp_path, make(), keep_trainer=True)
    _, dev = loaders()
    for name in ("epoch=3.ckpt", "epoch=2.ckpt"):
        state = saved(tmp_path / name)
        assert "current_model_state" in state  # an average and the trained weights differ
        average = float(state["state_dict"]["weight"])
        assert average != pytest.approx(float(state["current_model_state"]["weight"]), rel=1e-4)
        trainer.validate(module, dev, ckpt_path=tmp_path / name, verbose=False)
        assert module.validated[-1] == pytest.approx(average, abs=0), name
        trainer.test(module, dev, ckpt_path=tmp_path / name, verbose=False)
        assert float(module.weight) == pytest.approx(average, abs=0), name


def test_a_resumed_run_averages_as_the_uninterrupted_one(tmp_path):
    whole, _ = fit(tmp_path / "whole", EpochAveraging(epochs=3), max_epochs=4)
    # Cut after epoch 2: the window (epochs 1-3) holds two epochs whose mean is not the trained
    # weight, so the resumed run must restore both the trained weights and the mean's count.
    cut, _ = fit(tmp_path / "cut", EpochAveraging(epochs=3), stop_after=2)
    assert cut.validated == pytest.approx(whole.validated[:3], rel=1e-6)
    resumed, _ = fit(tmp_path / "resumed", EpochAveraging(epochs=3), max_epochs=4,
                     ckpt_path=tmp_path / "cut" / "epoch=2.ckpt")  # fmt: skip
    assert resumed.validated == pytest.approx(whole.validated[3:], rel=1e-6)
    assert float(resumed.weight) == pytest.approx(float(whole.weight), rel=1e-6)


def test_ema_validates_the_moving_average_of_every_step(tmp_path):
    decay = 0.5
    module, recorder = fit(tmp_path, EMAAveraging(decay=decay), max_epochs=2)
    average = recorder.steps[0]  # the first update copies the weights
    expected = []
    for step, weight in enumerate(recorder.steps[1:], start=2):
        average = decay * average + (1 - decay) * weight
        if step % 4 == 0:  # 4 batches per epoch
            expected.append(average)
    assert module.validated == pytest.approx(expected, rel=1e-6)
    assert module.validated[-1] != pytest.approx(recorder.steps[-1], rel=1e-3)
    state = saved(tmp_path / "epoch=1.ckpt")
    assert float(state["state_dict"]["weight"]) == pytest.approx(expected[-1], rel=1e-6)


@pytest.mark.parametrize("make", [lambda: EpochAveraging(epochs=3), lambda: EMAAveraging(0.5)])
def test_constant_buffers_survive_averaging_even_minus_infinity(make, tmp_path):
    """``-inf - -inf`` is nan: an average must keep a constant buffer as it is."""
    module, _ = fit(tmp_path, make(), max_epochs=3)
    state = saved(tmp_path / "epoch=2.ckpt")
    assert "current_model_state" in state  # the average was saved
    assert state["state_dict"]["log_prior"].tolist() == [0.0, -math.inf]
    assert module.log_prior.tolist() == [0.0, -math.inf]


@pytest.mark.parametrize(
    "make", [lambda: EpochAveraging(epochs=0), lambda: EMAAveraging(decay=1.0)]
)
def test_bad_settings_are_refused_with_the_key(make):
    with pytest.raises(ValueError, match="averaging"):
        make()
