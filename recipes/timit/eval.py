"""Recompute PER from a checkpoint on any split, with the checkpoint's features and decoding.

python -m recipes.timit.eval ckpt_path=outputs/timit_ctc/runs/<run>/checkpoints/best.ckpt
python -m recipes.timit.eval ckpt_path=... split=dev decoding=beam decoding.beam_width=16
"""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from recipes.timit.checkpoints import implied_hparams
from recipes.timit.data import timit_datamodule
from recipes.toolkit.ctc.workflow import evaluate_split, load_recognizer
from recipes.toolkit.evaluation.reports import per_table, write_results
from recipes.toolkit.run.trainer import build_trainer

log = logging.getLogger(__name__)


def check_corpus(trained_on: dict | None, here: dict, allow_other: bool) -> None:
    """Say when a checkpoint is scored on another corpus than it was trained on; refuse another
    kind (a real-TIMIT model on the built-in corpus) unless ``allow_other_corpus=true``."""
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


def evaluate_checkpoint(cfg: DictConfig) -> dict:
    module = load_recognizer(cfg.ckpt_path, cfg.get("decoding"), fill_missing=implied_hparams)
    stats = (module.feature_mean.double(), module.feature_std.double())
    datamodule = timit_datamodule(
        cfg.data, module.hparams.features, prepare_workers=cfg.prepare_workers, stats=stats
    )
    check_corpus(module.hparams.get("corpus"), datamodule.load().identity, cfg.allow_other_corpus)
    trainer = build_trainer(cfg, logger=False, callbacks=[])
    run_dir = Path(cfg.paths.output_dir)
    evaluation = evaluate_split(trainer, module, datamodule, cfg.split, None, run_dir)
    if not trainer.is_global_zero:
        return {}
    results = {
        "checkpoint": str(cfg.ckpt_path),
        "decoding": dict(module.hparams.decoding),
        "eval": {cfg.split: evaluation},
    }
    write_results(results, run_dir)
    print(f"\n{per_table(results)}\n\nrun directory: {run_dir}")
    return results


@hydra.main(version_base="1.3", config_path="../../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate_checkpoint(cfg)


if __name__ == "__main__":
    main()
