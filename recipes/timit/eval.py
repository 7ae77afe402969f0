"""Recompute PER from a checkpoint on any split, with the checkpoint's features and decoding.

python -m recipes.timit.eval ckpt_path=outputs/timit_ctc/runs/<run>/checkpoints/best.ckpt
python -m recipes.timit.eval ckpt_path=... split=dev decoding=beam decoding.beam_width=16
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from recipes.timit.datamodule import TIMITDataModule
from recipes.timit.module import PhoneRecognizer
from recipes.timit.reports import per_table, write_evaluation, write_results
from recipes.timit.train import build_trainer


def load_recognizer(ckpt_path: str, decoding: DictConfig | None = None) -> PhoneRecognizer:
    """Load a trained recogniser; ``decoding`` (if given) overrides the checkpoint's options."""
    path = Path(ckpt_path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path} (set ckpt_path=...)")
    module = PhoneRecognizer.load_from_checkpoint(str(path), map_location="cpu")
    if decoding:
        module.hparams.decoding.update(OmegaConf.to_container(decoding, resolve=True))
    return module.eval()


def evaluate_checkpoint(cfg: DictConfig) -> dict:
    module = load_recognizer(cfg.ckpt_path, cfg.get("decoding"))
    datamodule = TIMITDataModule(
        cfg.data, module.hparams.features, prepare_workers=cfg.prepare_workers
    )
    datamodule.eval_split = cfg.split
    trainer = build_trainer(cfg, logger=False, callbacks=[])
    trainer.test(module, datamodule=datamodule, verbose=False)
    if not trainer.is_global_zero:
        return {}
    run_dir = Path(cfg.paths.output_dir)
    results = {
        "checkpoint": str(cfg.ckpt_path),
        "decoding": dict(module.hparams.decoding),
        "eval": {cfg.split: write_evaluation(module.test_records, run_dir / "eval", cfg.split)},
    }
    write_results(results, run_dir)
    print(f"\n{per_table(results)}\n\nrun directory: {run_dir}")
    return results


@hydra.main(version_base="1.3", config_path="../../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate_checkpoint(cfg)


if __name__ == "__main__":
    main()
