"""Train a CTC phone recogniser, evaluate the best checkpoint, write the run directory.

python -m recipes.timit.train                          # Light GRU on the built-in corpus
python -m recipes.timit.train rnn=lstm rnn.num_layers=4 trainer.max_epochs=30
python -m recipes.timit.train data=timit data.root=/corpora/TIMIT trainer=gpu
"""

import logging
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from recipes.run_info import write_run_info
from recipes.timit import ddp_launch
from recipes.timit.datamodule import TIMITDataModule
from recipes.timit.decoding import BigramLM
from recipes.timit.module import PhoneRecognizer
from recipes.timit.plots import learning_curves, posteriors
from recipes.timit.preemption import trainer_plugins
from recipes.timit.reports import per_table, write_evaluation, write_results
from recipes.timit.resume import newest_checkpoint

log = logging.getLogger("recipes.timit")


def build_trainer(cfg: DictConfig, **overrides) -> L.Trainer:
    """Instantiate the Trainer with the configured callbacks and loggers (or ``overrides``)."""
    if "callbacks" not in overrides:
        overrides["callbacks"] = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    if "logger" not in overrides:
        overrides["logger"] = [instantiate(c) for c in (cfg.get("logger") or {}).values()] or False
    overrides.setdefault("plugins", trainer_plugins(cfg.trainer.get("plugins")))
    ddp_launch.install()
    return instantiate(cfg.trainer, **overrides)


def build_module(cfg: DictConfig, phones: list[str], feature_dim: int) -> PhoneRecognizer:
    """The recogniser described by the ``rnn``, ``model``, ``optim``, ... groups of ``cfg``."""
    return PhoneRecognizer(
        phones=phones,
        feature_dim=feature_dim,
        rnn=cfg.rnn,
        model=cfg.model,
        optim=cfg.optim,
        scheduler=cfg.scheduler,
        decoding=cfg.decoding,
        max_bad_steps=cfg.max_bad_steps,
        features=cfg.features,
    )


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> str | None:
    """``ckpt_path=auto`` resumes from the newest loadable last.ckpt / hpc_ckpt_* of ``run_dir``."""
    if cfg.ckpt_path in (None, "none"):
        return None
    if cfg.ckpt_path == "auto":
        newest = newest_checkpoint(run_dir)
        return str(newest) if newest else None
    return str(cfg.ckpt_path)


def evaluate(
    trainer: L.Trainer,
    module: PhoneRecognizer,
    datamodule: TIMITDataModule,
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


def plot_example(module: PhoneRecognizer, datamodule: TIMITDataModule, run_dir: Path) -> None:
    split = datamodule.load().splits["test"]
    feats = split.feats[0]
    module.eval()
    with torch.no_grad():
        log_probs = module(feats[None].to(module.device), torch.tensor([len(feats)]))[0].cpu()
    posteriors(
        feats, log_probs, module.phones, split.segments[0], split.utt_ids[0],
        run_dir / "posteriors.png",
    )  # fmt: skip


def train(cfg: DictConfig) -> dict:
    """Fit, evaluate the best checkpoint on ``cfg.eval_splits``, write results; return them."""
    run_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = TIMITDataModule(
        cfg.data, cfg.features, seed=cfg.seed, prepare_workers=cfg.prepare_workers
    )
    datamodule.load()
    module = build_module(cfg, datamodule.phones, datamodule.feature_dim)
    module.set_bigram(
        BigramLM.estimate(datamodule.train_label_sequences(), len(datamodule.phones) + 1)
    )
    if datamodule.load().stats is not None:
        module.set_feature_stats(*datamodule.load().stats)
    if cfg.compile:
        module.model = torch.compile(module.model)
    trainer = build_trainer(cfg)
    if trainer.is_global_zero:
        write_run_info(run_dir)
    started = time.time()
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_checkpoint(cfg, run_dir))
    train_seconds = time.time() - started
    checkpoint = trainer.checkpoint_callback.best_model_path or None
    results = {
        "run_dir": str(run_dir),
        "rnn": cfg.rnn.name,
        "best_checkpoint": checkpoint,
        "best_dev_per": (
            float(trainer.checkpoint_callback.best_model_score)
            if trainer.checkpoint_callback.best_model_score is not None
            else None
        ),
        "epochs": trainer.current_epoch,
        "train_seconds": round(train_seconds, 1),
        "parameters": sum(p.numel() for p in module.parameters()),
        "eval": {},
    }
    for split in cfg.eval_splits:
        results["eval"][split] = evaluate(trainer, module, datamodule, split, checkpoint, run_dir)
    if trainer.is_global_zero:
        write_results(results, run_dir)
        learning_curves(run_dir / "csv" / "metrics.csv", run_dir / "learning_curves.png")
        plot_example(module, datamodule, run_dir)
        print(f"\n{per_table(results)}\n\nrun directory: {run_dir}")
    return results


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    results = train(cfg)
    return results["eval"].get("dev", {}).get("per")


if __name__ == "__main__":
    main()
