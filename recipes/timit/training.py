"""What both TIMIT training entry points do before their task's own step: check the config,
seed, prepare the corpus, build the recogniser for TIMIT's phone sets."""

from __future__ import annotations

from collections.abc import Mapping

import lightning as L
from omegaconf import DictConfig

from recipes.timit.data import timit_datamodule
from recipes.timit.phones import scoring_map
from recipes.toolkit.data.datamodule import SpeechDataModule
from recipes.toolkit.recognizer import SpeechRecognizer
from recipes.toolkit.run.validate import validate_run_config
from recipes.toolkit.workflow import build_recognizer


def start_training(
    cfg: DictConfig,
    recognizer: type[SpeechRecognizer],
    kind: type[SpeechDataModule],
    options: Mapping | None = None,
) -> tuple[SpeechRecognizer, SpeechDataModule]:
    """The recogniser (a ``recognizer``, trained on ``train_phones``, scored on ``score_phones``;
    ``options``: the task's own arguments of it) and the data module (a ``kind``) of a training
    run, after the checks that need no data."""
    validate_run_config(cfg, recognizer.decoding_methods)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = timit_datamodule(
        cfg.data, cfg.features, cfg.seed, cfg.prepare_workers, cfg.get("augment"), kind=kind
    )
    corpus = datamodule.load()
    module = build_recognizer(
        cfg, datamodule.phones, corpus.feature_dim,
        scoring_map(int(cfg.data.train_phones), int(cfg.data.score_phones)),
        corpus.identity, corpus.stats, recognizer=recognizer, options=options,
    )  # fmt: skip
    return module, datamodule
