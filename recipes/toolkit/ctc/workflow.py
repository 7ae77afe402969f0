"""The steps of a CTC entry point: build or load a recogniser, evaluate a split, plot one."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from recipes.toolkit.ctc.module import CTCRecognizer
from recipes.toolkit.data.datamodule import SpeechDataModule
from recipes.toolkit.evaluation.plots import posteriors
from recipes.toolkit.evaluation.reports import write_evaluation

log = logging.getLogger(__name__)


def build_recognizer(
    cfg: DictConfig,
    phones: list[str],
    feature_dim: int,
    score_map: Mapping[str, str] | None,
    corpus: Mapping[str, str] | None = None,
) -> CTCRecognizer:
    """The recogniser described by the ``rnn``, ``model``, ``optim``, ... groups of ``cfg``."""
    return CTCRecognizer(
        phones=phones,
        feature_dim=feature_dim,
        rnn=cfg.rnn,
        model=cfg.model,
        optim=cfg.optim,
        scheduler=cfg.scheduler,
        decoding=cfg.decoding,
        max_bad_steps=cfg.max_bad_steps,
        features=cfg.features,
        score_map=score_map,
        corpus=corpus,
    )


def compile_model(module: CTCRecognizer) -> None:
    """``torch.compile`` the acoustic model in place, for shapes that change from batch to batch.

    In place (``nn.Module.compile``): the state-dict keys stay those of the plain model, so a
    checkpoint of a compiled run loads into an uncompiled recogniser (``torch.compile(model)``
    would prefix every key with ``_orig_mod.``).
    """
    module.model.compile(dynamic=True)


def load_recognizer(
    ckpt_path: str | Path,
    decoding: Mapping | None = None,
    fill_missing: Callable[[dict], dict] | None = None,
) -> CTCRecognizer:
    """A trained recogniser in eval mode.

    ``decoding`` (if given) overrides the checkpoint's decoding options; ``fill_missing`` gives
    values for hyperparameters that checkpoints of an older release do not have, from the ones
    they have (the task knows, for example, the score map its old checkpoints implied).
    """
    path = Path(ckpt_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path} (set ckpt_path=...)")
    missing = {}
    if fill_missing is not None:
        saved = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        hparams = dict(saved.get("hyper_parameters", {}))
        missing = {k: v for k, v in fill_missing(hparams).items() if k not in hparams}
    module = CTCRecognizer.load_from_checkpoint(str(path), map_location="cpu", **missing)
    if decoding:
        if isinstance(decoding, DictConfig):
            decoding = OmegaConf.to_container(decoding, resolve=True)
        module.hparams.decoding.update(decoding)
    return module.eval()


def check_corpus(trained_on: dict | None, here: dict, allow_other: bool) -> None:
    """Say when a checkpoint is scored on another corpus than it was trained on; refuse another
    kind (a model of a licensed corpus on a generated one) unless ``allow_other_corpus=true``."""
    if not trained_on:
        log.warning("the checkpoint does not record its training corpus (an older release)")
        return
    if trained_on["name"] != here["name"] and not allow_other:
        raise ValueError(
            f"the checkpoint was trained on the {trained_on['name']} corpus at "
            f"{trained_on['root']}, and this evaluation reads the {here['name']} corpus at "
            f"{here['root']}: pass data={trained_on['name']} data.root=..., or "
            "allow_other_corpus=true to score it there on purpose"
        )
    differs = [k for k in ("name", "root", "train_list") if trained_on.get(k) != here.get(k)]
    if differs:
        log.warning(
            "scoring on another corpus than the training one (%s differ: trained on %s, "
            "here %s); features are normalised with the checkpoint's statistics",
            ", ".join(differs), trained_on, here,
        )  # fmt: skip


def evaluate_split(
    trainer: L.Trainer,
    module: CTCRecognizer,
    datamodule: SpeechDataModule,
    split: str,
    checkpoint: str | None,
    run_dir: Path,
) -> dict:
    """Decode ``split`` with ``checkpoint`` (all ranks); rank 0 writes the per-utterance files."""
    datamodule.eval_split = split
    trainer.test(module, datamodule=datamodule, ckpt_path=checkpoint, verbose=False)
    if not trainer.is_global_zero:
        return {}
    return write_evaluation(module.test_records, run_dir / "eval", split)


def plot_example(module: CTCRecognizer, datamodule: SpeechDataModule, run_dir: Path) -> None:
    """``posteriors.png``: features, CTC posteriors and reference segments of one test utterance."""
    split = datamodule.load().splits["test"]
    feats = split.feats[0]
    module.eval()
    with torch.no_grad():
        log_probs = module(feats[None].to(module.device), torch.tensor([len(feats)]))[0].cpu()
    posteriors(
        feats, log_probs, module.phones, split.segments[0], split.utt_ids[0],
        run_dir / "posteriors.png",
    )  # fmt: skip
