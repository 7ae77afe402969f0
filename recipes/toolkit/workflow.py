"""The steps of a task's entry points, for any recogniser: build, train and evaluate, load, score.

A task's ``train`` builds its data module and recogniser (:func:`build_recognizer`), adds what
its decoding needs from the training data (a CTC bigram, a phone loop), and calls
:func:`train_and_evaluate`; ``eval`` and ``transcribe`` call :func:`load_recognizer`, which
reads the recogniser's class from the checkpoint, so one command serves every task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from recipes.toolkit.ctc.module import CTCRecognizer
from recipes.toolkit.data.datamodule import SpeechDataModule
from recipes.toolkit.evaluation.plots import learning_curves, posteriors
from recipes.toolkit.evaluation.reports import per_table, write_evaluation, write_results
from recipes.toolkit.framewise.module import FramewiseRecognizer
from recipes.toolkit.recognizer import SpeechRecognizer
from recipes.toolkit.run.atomic import atomic_write_text
from recipes.toolkit.run.resume import resume_checkpoint
from recipes.toolkit.run.run_info import write_run_info
from recipes.toolkit.run.trainer import build_trainer
from recipes.toolkit.run.training_clock import TrainingClock

log = logging.getLogger(__name__)

# The recognisers a checkpoint can name (its "recognizer" entry; CTC when absent: older releases).
RECOGNIZERS: dict[str, type[SpeechRecognizer]] = {
    "CTCRecognizer": CTCRecognizer,
    "FramewiseRecognizer": FramewiseRecognizer,
}


def build_recognizer(
    cfg: DictConfig,
    phones: list[str],
    feature_dim: int,
    score_map: Mapping[str, str] | None,
    corpus: Mapping[str, str] | None = None,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    recognizer: type[SpeechRecognizer] = CTCRecognizer,
    options: Mapping | None = None,
) -> SpeechRecognizer:
    """The recogniser described by the ``rnn``, ``model``, ``optim``, ... groups of ``cfg``;
    ``corpus``: what it is trained on; ``stats``: the training data's feature mean and std;
    ``options``: arguments of the task's own recogniser (``frame_loss_weight`` of CTC)."""
    module = recognizer(
        phones=phones,
        feature_dim=feature_dim,
        rnn=cfg.rnn,
        model=cfg.model,
        optim=cfg.optim,
        scheduler=cfg.scheduler,
        decoding=cfg.decoding,
        max_bad_steps=cfg.max_bad_steps,
        max_bad_fraction=cfg.get("max_bad_fraction", 0.1),
        features=cfg.features,
        score_map=score_map,
        corpus=corpus,
        **dict(options or {}),
    )
    if stats is not None:
        module.set_feature_stats(*stats)
    return module


def compile_model(module: SpeechRecognizer, backend: str = "inductor") -> None:
    """``torch.compile`` the acoustic model in place, for shapes that change from batch to batch.

    ``backend`` is ``torch.compile``'s (``"inductor"`` generates kernels; ``"aot_eager"`` traces
    forward and backward without generating code: minutes less on a CPU, for checking a model
    compiles).

    In place (``nn.Module.compile``): the state-dict keys stay those of the plain model, so a
    checkpoint of a compiled run loads into an uncompiled recogniser (``torch.compile(model)``
    would prefix every key with ``_orig_mod.``).
    """
    module.model.compile(dynamic=True, backend=backend)


def train_and_evaluate(
    cfg: DictConfig, module: SpeechRecognizer, datamodule: SpeechDataModule
) -> dict:
    """Fit (resuming when ``cfg.ckpt_path`` says so), evaluate the best checkpoint on
    ``cfg.eval_splits``, write ``results.json``, the learning curves and an example's
    posteriors into the run directory; return the results."""
    run_dir = Path(cfg.paths.output_dir)
    if cfg.compile:
        compile_model(module, cfg.get("compile_backend", "inductor"))
    resume_from = resume_checkpoint(cfg.ckpt_path, run_dir)  # once: it removes stale files
    trainer = build_trainer(cfg, resume_from=resume_from)
    if trainer.is_global_zero:
        write_run_info(run_dir)
        write_skipped(datamodule.load().skipped, run_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    clock = next(c for c in trainer.callbacks if isinstance(c, TrainingClock))
    checkpoint = trainer.checkpoint_callback.best_model_path or None
    best_score = trainer.checkpoint_callback.best_model_score
    results = {
        "run_dir": str(run_dir),
        "rnn": cfg.rnn.name,
        "best_checkpoint": checkpoint,
        "best_dev_per": float(best_score) if best_score is not None else None,
        "epochs": trainer.current_epoch,
        "train_seconds": round(clock.seconds, 1),  # every start of the run
        "parameters": sum(p.numel() for p in module.parameters()),
        "eval": {},
    }
    for split in cfg.eval_splits:
        results["eval"][split] = evaluate_split(
            trainer, module, datamodule, split, checkpoint, run_dir
        )
    if trainer.is_global_zero:
        write_results(results, run_dir)
        learning_curves(run_dir / "csv" / "metrics.csv", run_dir / "learning_curves.png")
        plot_example(module, datamodule, run_dir)
        print(f"\n{per_table(results)}\n\nrun directory: {run_dir}")
    return results


def write_skipped(skipped: list[tuple[str, str]], run_dir: Path) -> Path | None:
    """``skipped.tsv``: every corpus item left out (``data.skip_bad=true``), with the reason."""
    if not skipped:
        return None
    lines = [f"{path}\t{reason}\n" for path, reason in skipped]
    log.warning("%d corpus items were skipped: listed in %s", len(skipped), run_dir / "skipped.tsv")
    return atomic_write_text(run_dir / "skipped.tsv", "path\treason\n" + "".join(lines))


def load_recognizer(
    ckpt_path: str | Path,
    decoding: Mapping | None = None,
    fill_missing: Callable[[dict], dict] | None = None,
) -> SpeechRecognizer:
    """A trained recogniser (of the class its checkpoint names) in eval mode.

    ``decoding`` (if given) overrides the checkpoint's decoding options; ``fill_missing`` gives
    values for hyperparameters that checkpoints of an older release do not have, from the ones
    they have (the task knows, for example, the score map its old checkpoints implied).
    """
    path = Path(ckpt_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path} (set ckpt_path=...)")
    saved = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    name = saved.get("recognizer", "CTCRecognizer")
    if name not in RECOGNIZERS:
        raise ValueError(f"{path}: unknown recognizer {name!r}; known: {sorted(RECOGNIZERS)}")
    missing = {}
    if fill_missing is not None:
        hparams = dict(saved.get("hyper_parameters", {}))
        missing = {k: v for k, v in fill_missing(hparams).items() if k not in hparams}
    module = RECOGNIZERS[name].load_from_checkpoint(str(path), map_location="cpu", **missing)
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
    module: SpeechRecognizer,
    datamodule: SpeechDataModule,
    split: str,
    checkpoint: str | None,
    run_dir: Path,
) -> dict:
    """Decode ``split`` with ``checkpoint`` (all ranks); rank 0 writes the per-utterance files
    and the task's own evaluation files."""
    datamodule.eval_split = split
    trainer.test(module, datamodule=datamodule, ckpt_path=checkpoint, verbose=False)
    if not trainer.is_global_zero:
        return {}
    evaluation = write_evaluation(module.test_records, run_dir / "eval", split)
    evaluation.update(module.write_extra_evaluation(run_dir / "eval", split))
    return evaluation


def plot_example(module: SpeechRecognizer, datamodule: SpeechDataModule, run_dir: Path) -> None:
    """``posteriors.png``: features, posteriors and reference segments of one test utterance."""
    split = datamodule.load().splits["test"]
    feats = split.feats[0]
    module.eval()
    with torch.no_grad():
        log_probs = module(feats[None].to(module.device), torch.tensor([len(feats)]))[0].cpu()
    posteriors(
        feats, log_probs, module.phones, split.segments[0], split.utt_ids[0],
        run_dir / "posteriors.png", blank=isinstance(module, CTCRecognizer),
    )  # fmt: skip
