"""Recompute PER from a checkpoint (of either task) on any split, with the checkpoint's features
and decoding.

python -m recipes.timit.eval ckpt_path=outputs/timit_ctc/runs/<run>/checkpoints/best.ckpt
python -m recipes.timit.eval ckpt_path=... split=dev decoding=beam decoding.beam_width=16
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from recipes.timit.checkpoints import implied_hparams
from recipes.timit.data import timit_datamodule
from recipes.toolkit.config import register_resolvers
from recipes.toolkit.data.datamodule import SpeechDataModule
from recipes.toolkit.evaluation.reports import per_table, write_results
from recipes.toolkit.framewise.data import FramewiseDataModule
from recipes.toolkit.framewise.module import FramewiseRecognizer
from recipes.toolkit.run.trainer import build_trainer
from recipes.toolkit.workflow import check_corpus, evaluate_split, load_recognizer


def evaluate_checkpoint(cfg: DictConfig) -> dict:
    module = load_recognizer(cfg.ckpt_path, cfg.get("decoding"), fill_missing=implied_hparams)
    stats = (module.feature_mean.double(), module.feature_std.double())
    kind = FramewiseDataModule if isinstance(module, FramewiseRecognizer) else SpeechDataModule
    datamodule = timit_datamodule(
        cfg.data, module.hparams.features, prepare_workers=cfg.prepare_workers, stats=stats,
        kind=kind,
    )  # fmt: skip
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


register_resolvers()  # ${shared_conf:}: the primary configs find the shared groups with it


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate_checkpoint(cfg)


if __name__ == "__main__":
    main()
