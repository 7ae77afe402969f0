"""Data fixtures: a tiny built-in TIMIT-format corpus generated once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import recipes.toolkit.run.atomic as atomic
from recipes.timit.builtin.generate import ensure_builtin_corpus

# 4 train speakers x 3 sentences (+ SA1/SA2), 2 dev and 2 core-test speakers: ~1 s to generate.
TINY_PARAMS = {
    "seed": 7,
    "num_train_speakers": 4,
    "num_dev_speakers": 2,
    "num_test_speakers": 2,
    "sentences_per_speaker": 3,
}


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a tiny generated corpus (treat as read-only; copy it to modify)."""
    return ensure_builtin_corpus(tmp_path_factory.mktemp("corpus") / "builtin_timit", **TINY_PARAMS)


@pytest.fixture
def tiny_data_cfg(tiny_corpus: Path, tmp_path: Path) -> dict:
    """A ``data`` config for :func:`recipes.timit.prepare.prepare_corpus` on the tiny corpus,
    with a fresh feature cache per test."""
    return {
        "name": "builtin",
        "root": str(tiny_corpus),
        "cache_dir": str(tmp_path / "features"),
        "skip_bad": False,
        "train_phones": 48,
        "generator": dict(TINY_PARAMS),
    }


@pytest.fixture
def umask_022():
    """The usual umask (022) for the test; the file mode atomic writes give is recomputed."""
    previous = os.umask(0o022)
    atomic._file_mode.cache_clear()
    yield
    os.umask(previous)
    atomic._file_mode.cache_clear()
