"""Package a checkpoint of either task as a folder that runs with torch and torchaudio alone.

python -m recipes.timit.export ckpt_path=outputs/timit_ctc/runs/<run>/checkpoints/best.ckpt out=m
python -m recipes.timit.export ckpt_path=... out=m decoding=beam overwrite=true
python -m recipes.timit.export ckpt_path=... out=m8 quantize=int8
python -m recipes.timit.export ckpt_path=... out=m onnx=true   # also model.onnx

The folder (weights, config.json, MODEL_CARD.md, the inference code and rnnlib) is described in
:mod:`recipes.toolkit.package.export`; load it with ``sys.path.insert(0, "m")``,
``import recognizer_runtime`` and ``recognizer_runtime.load()``.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from recipes.timit.checkpoints import implied_hparams
from recipes.toolkit.config import register_resolvers
from recipes.toolkit.package.export import export_package
from recipes.toolkit.workflow import load_recognizer

register_resolvers()  # ${shared_conf:}: the primary configs find the shared groups with it


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> None:
    module = load_recognizer(cfg.ckpt_path, cfg.get("decoding"), fill_missing=implied_hparams)
    out = export_package(module, Path(str(cfg.out)), cfg.ckpt_path, overwrite=cfg.overwrite,
                         quantize=str(cfg.get("quantize", "none")),
                         onnx=bool(cfg.get("onnx", False)))  # fmt: skip
    print(f"packaged model: {out}")


if __name__ == "__main__":
    main()
