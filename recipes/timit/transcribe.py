"""Phones for audio files (NIST SPHERE, WAV, FLAC, any rate) from a checkpoint of either task.

python -m recipes.timit.transcribe ckpt_path=.../best.ckpt 'audio=[a.wav,b.flac]'
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig

from recipes.timit.checkpoints import implied_hparams
from recipes.toolkit.transcription import transcribe
from recipes.toolkit.workflow import load_recognizer


@hydra.main(version_base="1.3", config_path="../../conf", config_name="transcribe")
def main(cfg: DictConfig) -> None:
    audio = cfg.audio if isinstance(cfg.audio, ListConfig) else [cfg.audio]
    paths = [Path(str(p)).expanduser() for p in audio]
    module = load_recognizer(cfg.ckpt_path, cfg.get("decoding"), fill_missing=implied_hparams)
    for path, phones in zip(paths, transcribe(module, paths, cfg.fold39), strict=True):
        print(f"{path}\t{' '.join(phones)}")


if __name__ == "__main__":
    main()
