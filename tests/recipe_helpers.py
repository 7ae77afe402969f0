"""Run the recipe's real entry points as a user would, on a small generated corpus."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A small corpus (4 training speakers) and a small, quick model.
SMALL_CORPUS = [
    "data.generator.num_train_speakers=4",
    "data.generator.num_dev_speakers=2",
    "data.generator.num_test_speakers=2",
    "data.generator.sentences_per_speaker=3",
    "prepare_workers=1",
]
SMALL_MODEL = ["rnn.hidden_size=64", "rnn.num_layers=2"]
# A model that learns the small corpus's training utterances by heart (no regularisation).
OVERFIT = [
    *SMALL_CORPUS,
    "rnn=ligru",
    "rnn.hidden_size=128",
    "rnn.nonlinearity=relu",
    "rnn.num_layers=2",
    "rnn.dropout=0",
    "model.output_dropout=0",
    "optim.lr=0.004",
    "scheduler=none",
    "data.max_frames=1200",
    "eval_splits=[train,dev]",  # scored on what it learnt
    "callbacks.model_checkpoint.monitor=null",
]


def run_entry(
    module: str, overrides: list[str], data_dir: Path, run_dir: Path, check: bool = True
) -> subprocess.CompletedProcess:
    """``python -m recipes.timit.<module> overrides...`` with its data and run directories."""
    command = [sys.executable, "-m", f"recipes.timit.{module}", *overrides]
    command.append(f"hydra.run.dir={run_dir}")
    env = dict(os.environ, RNNLIB_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
            f"{done.stderr[-5000:]}"
        )
    return done


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A data directory (corpus + feature cache) shared by the tests of one module."""
    return tmp_path_factory.mktemp("data")


def load_script(name: str):
    """The module of ``scripts/<name>.py`` (scripts are not a package)."""
    path = REPO / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
