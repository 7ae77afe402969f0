"""Every config group option composes, and what it names instantiates."""

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import MissingConfigException
from omegaconf import open_dict

from recipes.timit.phones import phone_set, scoring_map
from recipes.toolkit.config import register_resolvers
from recipes.toolkit.ctc.module import CTCRecognizer
from recipes.toolkit.data.feature_config import FeatureConfig
from recipes.toolkit.framewise.module import FramewiseRecognizer
from recipes.toolkit.run.trainer import build_trainer
from recipes.toolkit.run.validate import validate_run_config
from recipes.toolkit.workflow import build_recognizer, compile_model

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"  # the shared groups
TASK_CONF = REPO / "recipes" / "timit" / "conf"  # TIMIT's primary configs, data and experiment
GROUPS = [
    "rnn", "model", "optim", "scheduler", "decoding", "trainer", "logger", "callbacks",
    "features", "data", "experiment", "augment", "debug",
]  # fmt: skip


def options(group: str) -> list[str]:
    return sorted(p.stem for root in (CONF, TASK_CONF) for p in (root / group).glob("*.yaml"))


def composed(overrides: list[str], tmp_path: Path, primary: str = "train"):
    register_resolvers()
    with initialize_config_dir(config_dir=str(TASK_CONF), version_base="1.3"):
        cfg = compose(primary, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.runtime.cwd = str(tmp_path)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


CASES = [(group, option) for group in GROUPS for option in options(group)]


@pytest.mark.parametrize("group,option", CASES)
def test_every_group_option_composes_and_instantiates(group, option, tmp_path):
    overrides = [f"{group}={option}"]
    if group == "data" and option == "timit":
        overrides.append("data.root=/corpora/TIMIT")
    framewise = (group, option) == ("decoding", "viterbi")  # the framewise task's decoding
    cfg = composed(overrides, tmp_path, "train_framewise" if framewise else "train")
    features = FeatureConfig.from_mapping(cfg.features)
    phones = phone_set(cfg.data.train_phones)
    recognizer = FramewiseRecognizer if framewise else CTCRecognizer
    validate_run_config(cfg, recognizer.decoding_methods)
    module = build_recognizer(
        cfg, phones, features.dim, scoring_map(cfg.data.train_phones), recognizer=recognizer
    )
    module.configure_optimizers()
    assert module.model.encoder.__class__.__name__.lower() == cfg.rnn.name
    if cfg.trainer.accelerator == "cpu":
        trainer = build_trainer(cfg)
        fast_dev_run = cfg.trainer.get("fast_dev_run", False)  # Lightning runs one epoch then
        assert trainer.max_epochs == (1 if fast_dev_run else cfg.trainer.max_epochs)
        assert trainer.checkpoint_callback.dirpath == str(tmp_path / "checkpoints")


def test_rnn_topology_is_an_override(tmp_path):
    cfg = composed(["rnn=lstm", "rnn.num_layers=5", "rnn.hidden_size=96"], tmp_path)
    module = CTCRecognizer(phones=phone_set(48), feature_dim=40, rnn=cfg.rnn)
    assert module.model.encoder.num_layers == 5 and module.model.encoder.hidden_size == 96


def test_unknown_group_option_lists_the_choices(tmp_path):
    with pytest.raises(MissingConfigException, match="sligru"):
        composed(["rnn=transformer"], tmp_path)


def test_compiled_model_keeps_the_state_dict_keys_of_the_plain_one(tmp_path):
    """``compile=true`` compiles in place: its checkpoints load into an uncompiled recogniser."""
    cfg = composed([], tmp_path)
    module = CTCRecognizer(phones=phone_set(48), feature_dim=40, rnn=cfg.rnn)
    keys = list(module.state_dict())
    compile_model(module)
    assert list(module.state_dict()) == keys
    CTCRecognizer(phones=phone_set(48), feature_dim=40, rnn=cfg.rnn).load_state_dict(
        module.state_dict()
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("rnn.hidden_size=0", "rnn.hidden_size must be a positive integer, got 0"),
        ("rnn.num_layers=0", "rnn.num_layers must be a positive integer, got 0"),
        ("rnn.hidden_size=big", "rnn.hidden_size must be a positive integer, got 'big'"),
        ("rnn.nonlinearity=swish", "unknown nonlinearity 'swish'"),
        ("trainer.max_epochs=-1", "trainer.max_epochs must be a positive integer, got -1"),
        ("trainer.max_epochs=0", "trainer.max_epochs must be a positive integer, got 0"),
    ],
)
def test_bad_settings_are_named_before_any_data_work(override, message, tmp_path):
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_run_config(composed([override], tmp_path))


def test_default_and_every_rnn_type_validate(tmp_path):
    for name in options("rnn"):
        validate_run_config(composed([f"rnn={name}"], tmp_path))


def test_each_task_refuses_the_other_tasks_decoding(tmp_path):
    cfg = composed(["decoding=viterbi"], tmp_path)
    with pytest.raises(ValueError, match=r"decoding.method must be one of \['greedy', 'beam'\]"):
        validate_run_config(cfg, CTCRecognizer.decoding_methods)
    cfg = composed(["decoding=beam"], tmp_path, "train_framewise")
    with pytest.raises(ValueError, match="for this task, got 'beam'"):
        validate_run_config(cfg, FramewiseRecognizer.decoding_methods)


def test_each_group_lives_in_one_place():
    """Shared groups in conf/, TIMIT's own beside its code: no option is defined twice."""
    shared = {p.name for p in CONF.iterdir() if p.is_dir()}
    own = {p.name for p in TASK_CONF.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert own == {"data", "experiment"} and not shared & own
    assert not list(CONF.glob("*.yaml"))  # primary configs are the task's


@pytest.mark.parametrize("preset", ["pytorch_kaldi_ligru", "pytorch_kaldi_gru",
                                    "pytorch_kaldi_lstm", "pytorch_kaldi_rnn"])  # fmt: skip
def test_pytorch_kaldi_presets_are_framewise_with_the_framewise_entry_point(preset, tmp_path):
    ctc = composed([f"experiment={preset}"], tmp_path)
    framewise = composed([f"experiment={preset}"], tmp_path, "train_framewise")
    assert ctc.decoding.method == "greedy" and framewise.decoding.method == "viterbi"
    assert framewise.rnn == ctc.rnn and framewise.optim == ctc.optim
    assert framewise.rnn.hidden_size == 550 and framewise.trainer.max_epochs == 24
    assert framewise.task_name == "timit_framewise" and ctc.task_name == f"timit_{preset}"
