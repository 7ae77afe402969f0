"""The CRDNN shape (model=crdnn): 2-D conv blocks, DNN blocks; old model configs unchanged."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from recipes.timit.phones import phone_set
from recipes.toolkit.config import register_resolvers
from recipes.toolkit.crdnn import Conv2dFrontEnd, DNNOutput
from recipes.toolkit.ctc.module import CTCRecognizer
from recipes.toolkit.model import AcousticModel, ConvFrontEnd
from recipes.toolkit.package.export import export_package
from recipes.toolkit.package.vendor import RUNTIME_PACKAGE
from recipes.toolkit.workflow import load_recognizer
from tests.inference_helpers import build, save_checkpoint, write_audio
from tests.recipe_helpers import REPO

RNN = {"name": "gru", "hidden_size": 8, "bidirectional": True}
FIXTURE = REPO / "tests" / "fixtures" / "ctc_ligru_v0.ckpt"


def crdnn(**options) -> AcousticModel:
    torch.manual_seed(0)
    settings = {"conv2d_channels": [4, 6], "dnn_sizes": [16, 12], "conv_dropout": 0.3,
                "dnn_dropout": 0.3, **options}  # fmt: skip
    return AcousticModel(40, 10, RNN, **settings).eval()


def test_shapes_keep_the_time_resolution_and_flatten_channels_by_pooled_bins():
    model = crdnn()
    assert isinstance(model.frontend, Conv2dFrontEnd)
    x, lengths = torch.randn(2, 37, 40), torch.tensor([37, 20])
    front = model.frontend(x, lengths)
    assert front.shape == (2, 37, 6 * 10) and model.frontend.output_size == 60  # 40 -> 20 -> 10
    assert model.encoder.input_size == 60
    assert isinstance(model.output, DNNOutput) and model.output.linear.in_features == 12
    assert model.output.out_features == 10
    assert model(x, lengths).shape == (2, 37, 10)
    assert Conv2dFrontEnd(23, [4, 4], freq_pool=2).output_size == 4 * 5  # 23 -> 11 -> 5
    assert Conv2dFrontEnd(40, [4], freq_pool=1).output_size == 4 * 40


def test_garbage_in_padded_frames_changes_no_valid_output():
    model = crdnn()
    x, lengths = torch.randn(3, 40, 40), torch.tensor([40, 23, 5])
    garbage = x.clone()
    garbage[1, 23:] = 1e3 * torch.randn(17, 40)
    garbage[2, 5:] = float("1e4")
    with torch.no_grad():
        clean, dirty = model(x, lengths), model(garbage, lengths)
        alone = model(x[1:2, :23], torch.tensor([23]))  # the utterance without any padding
        front_clean, front_dirty = model.frontend(x, lengths), model.frontend(garbage, lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(dirty[b, :n], clean[b, :n], rtol=0, atol=1e-5)
        torch.testing.assert_close(front_dirty[b, :n], front_clean[b, :n], rtol=0, atol=1e-5)
        assert not front_dirty[b, n:].any()  # the front end's padded frames are zero
    torch.testing.assert_close(alone[0], clean[1, :23], rtol=0, atol=1e-5)


def test_conv_dropout_drops_whole_channels_in_training_only():
    front = Conv2dFrontEnd(40, [8], dropout=0.5).train()
    torch.manual_seed(1)
    y = front(torch.randn(4, 12, 40), torch.full((4,), 12)).reshape(4, 12, 8, 20)
    dropped = (y == 0).all(dim=3).all(dim=1)  # [batch, channels]: a channel zero everywhere
    assert dropped.any() and not dropped.all()
    front.eval()
    x = torch.randn(1, 12, 40)
    assert torch.equal(front(x, torch.tensor([12])), front(x, torch.tensor([12])))


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="model.freq_pool or model.conv2d_channels"):
        Conv2dFrontEnd(8, [4, 4, 4, 4], freq_pool=2)
    with pytest.raises(ValueError, match=r"and model.conv2d_channels .* both set"):
        AcousticModel(40, 10, RNN, frontend_channels=[8], conv2d_channels=[4])


def test_old_model_settings_build_todays_model_and_load_an_old_checkpoint():
    saved = torch.load(FIXTURE, map_location="cpu", weights_only=False)
    hparams = saved["hyper_parameters"]
    assert set(hparams["model"]) == {"frontend_channels", "output_dropout"}
    model = AcousticModel(hparams["feature_dim"], len(hparams["phones"]) + 1, hparams["rnn"],
                          **hparams["model"])  # fmt: skip
    assert model.frontend is None and isinstance(model.output, torch.nn.Linear)
    state = {k.removeprefix("model."): v for k, v in saved["state_dict"].items()
             if k.startswith("model.")}  # fmt: skip
    model.load_state_dict(state, strict=True)
    conv = AcousticModel(40, 10, RNN, frontend_channels=[8, 8], output_dropout=0.15)
    assert isinstance(conv.frontend, ConvFrontEnd)
    assert {k.split(".")[0] for k in conv.state_dict()} == {"frontend", "encoder", "output"}
    assert "output.weight" in conv.state_dict()


def test_model_group_builds_the_crdnn_recognizer():
    register_resolvers()
    with initialize_config_dir(config_dir=str(REPO / "recipes/timit/conf"), version_base="1.3"):
        cfg = compose("train", overrides=["model=crdnn", "rnn.hidden_size=8", "rnn.num_layers=1"])
    assert list(cfg.model.conv2d_channels) == [128, 256] and list(cfg.model.dnn_sizes) == [512] * 2
    module = CTCRecognizer(phones=phone_set(48), feature_dim=40, rnn=cfg.rnn, model=cfg.model)
    assert isinstance(module.model.frontend, Conv2dFrontEnd)
    assert module.model.frontend.output_size == 256 * 10
    linears = [m for m in module.model.output.blocks if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [512, 512]
    assert module.hparams.model["freq_pool"] == 2  # kept in the checkpoint's hyperparameters


def test_a_crdnn_package_runs_without_the_training_stack_and_equals_the_checkpoint(tmp_path):
    """The packaged runtime carries recipes/toolkit/crdnn.py (vendor.MODULES) and builds the
    CRDNN from the package's model settings."""
    from tests.test_package_export import assert_same, in_repository, run_isolated

    shape = {"conv2d_channels": [4, 6], "conv_dropout": 0.1, "dnn_sizes": [16], "dnn_dropout": 0.1}
    checkpoint = save_checkpoint(build("ctc", seed=4, model=shape), tmp_path / "crdnn.ckpt")
    folder = export_package(load_recognizer(checkpoint), tmp_path / "package", checkpoint)
    assert (folder / RUNTIME_PACKAGE / "crdnn.py").is_file()
    audio = write_audio(tmp_path / "audio")
    packaged = run_isolated(folder, audio, [None], tmp_path / "out.pt")
    assert isinstance(packaged, dict), packaged.stderr[-4000:]
    assert packaged["attempts"] == [] and packaged["loaded"] == []
    assert_same(packaged["runs"][0], in_repository(checkpoint, audio, None))
