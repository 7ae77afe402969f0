"""Every ``experiment=`` preset trains: one real training step of each, at reduced size, with its
own model shape, optimizer and features (the recipe's step, as scripts/bench_recipe.py runs it)."""

import math
import warnings

import pytest
import torch

from tests.recipe_helpers import REPO, load_script

PRESETS = sorted(
    p.stem for p in (REPO / "recipes" / "timit" / "conf" / "experiment").glob("*.yaml")
)
TINY = [
    "data.generator.num_train_speakers=2",
    "data.generator.num_dev_speakers=1",
    "data.generator.num_test_speakers=1",
    "data.generator.sentences_per_speaker=2",
    "data.max_frames=1500",
    "prepare_workers=1",
    "rnn.hidden_size=16",
    "rnn.num_layers=1",
]


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_recipe")


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_takes_a_training_step(preset, bench, tmp_path_factory):
    data_dir = tmp_path_factory.getbasetemp() / "preset_data"
    cfg = bench.compose_config("ligru", [f"experiment={preset}", *TINY], data_dir)
    if cfg.model.get("frontend_channels"):
        cfg.model.frontend_channels = [8]  # the preset's front end, narrower
    if cfg.model.get("conv2d_channels"):
        cfg.model.conv2d_channels = [4] * len(cfg.model.conv2d_channels)  # its CRDNN, narrower
    if cfg.model.get("dnn_sizes"):
        cfg.model.dnn_sizes = [16] * len(cfg.model.dnn_sizes)
    datamodule = bench.recipe_datamodule(cfg)
    datamodule.load()
    (batch,) = bench.training_batches(datamodule, 1)
    runner = bench.Runner(preset, cfg, datamodule)
    before = [p.detach().clone() for p in runner.module.parameters()]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer to log to
        loss = runner.module.training_step(batch, 0)
        assert loss is not None and math.isfinite(float(loss))
        runner.step(batch, 0)
    assert runner.skipped == 0
    changed = [
        not torch.equal(a, b) for a, b in zip(before, runner.module.parameters(), strict=True)
    ]
    assert sum(changed) > len(changed) // 2  # the optimizer moved the weights
    assert runner.module.hparams.rnn["name"] == cfg.rnn.name
