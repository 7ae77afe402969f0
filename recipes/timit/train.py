"""Train a CTC phone recogniser, evaluate the best checkpoint, write the run directory.

python -m recipes.timit.train                          # Light GRU on the built-in corpus
python -m recipes.timit.train rnn=lstm rnn.num_layers=4 trainer.max_epochs=30
python -m recipes.timit.train data=timit data.root=/corpora/TIMIT trainer=gpu
"""

import time
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig

from recipes.timit.data import timit_datamodule
from recipes.timit.phones import scoring_map
from recipes.toolkit.ctc.decoding import BigramLM
from recipes.toolkit.ctc.workflow import (
    build_recognizer,
    compile_model,
    evaluate_split,
    plot_example,
)
from recipes.toolkit.evaluation.plots import learning_curves
from recipes.toolkit.evaluation.reports import per_table, write_results
from recipes.toolkit.run.run_info import write_run_info
from recipes.toolkit.run.trainer import build_trainer, resume_checkpoint
from recipes.toolkit.run.validate import validate_run_config


def train(cfg: DictConfig) -> dict:
    """Fit, evaluate the best checkpoint on ``cfg.eval_splits``, write results; return them."""
    validate_run_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = timit_datamodule(
        cfg.data, cfg.features, cfg.seed, cfg.prepare_workers, cfg.get("augment")
    )
    corpus = datamodule.load()
    score_map = scoring_map(int(cfg.data.train_phones), int(cfg.data.score_phones))
    module = build_recognizer(
        cfg, datamodule.phones, corpus.feature_dim, score_map, corpus.identity
    )
    module.set_bigram(
        BigramLM.estimate(datamodule.train_label_sequences(), len(datamodule.phones) + 1)
    )
    if corpus.stats is not None:
        module.set_feature_stats(*corpus.stats)
    if cfg.compile:
        compile_model(module)
    trainer = build_trainer(cfg)
    if trainer.is_global_zero:
        write_run_info(run_dir)
    started = time.time()
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_checkpoint(cfg.ckpt_path, run_dir))
    train_seconds = time.time() - started
    checkpoint = trainer.checkpoint_callback.best_model_path or None
    best_score = trainer.checkpoint_callback.best_model_score
    results = {
        "run_dir": str(run_dir),
        "rnn": cfg.rnn.name,
        "best_checkpoint": checkpoint,
        "best_dev_per": float(best_score) if best_score is not None else None,
        "epochs": trainer.current_epoch,
        "train_seconds": round(train_seconds, 1),
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


@hydra.main(version_base="1.3", config_path="../../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    results = train(cfg)
    return results["eval"].get("dev", {}).get("per")


if __name__ == "__main__":
    main()
