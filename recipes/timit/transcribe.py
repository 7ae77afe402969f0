"""Phones for audio files (NIST SPHERE, WAV, FLAC, any rate) from a trained checkpoint.

python -m recipes.timit.transcribe ckpt_path=.../best.ckpt 'audio=[a.wav,b.flac]'
"""

from pathlib import Path

import hydra
import soundfile as sf
import torch
import torchaudio
from omegaconf import DictConfig, ListConfig

from recipes.timit.corpus import SAMPLE_RATE
from recipes.timit.eval import load_recognizer
from recipes.timit.features import FeatureConfig, compute_fbank, moments
from recipes.timit.module import PhoneRecognizer
from recipes.timit.phones import fold_to_39


def read_audio(path: Path) -> torch.Tensor:
    """``[1, N]`` mono waveform at 16 kHz, int16 scale (as the training features)."""
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except RuntimeError as error:
        raise ValueError(f"{path}: not a readable audio file ({error})") from error
    wave = torch.from_numpy(data.mean(axis=1)).unsqueeze(0) * 32768.0
    if rate != SAMPLE_RATE:
        wave = torchaudio.functional.resample(wave, rate, SAMPLE_RATE)
    return wave


def features_for(module: PhoneRecognizer, wave: torch.Tensor) -> torch.Tensor:
    """Filterbanks normalised as in training (per-utterance for speaker normalisation)."""
    cfg = FeatureConfig.from_mapping(module.hparams.features)
    feats = compute_fbank(wave, cfg)
    if cfg.normalization == "global":
        return (feats - module.feature_mean) / module.feature_std
    if cfg.normalization == "speaker":
        mean, std = moments([feats])
        return ((feats.double() - mean) / std).float()
    return feats


def transcribe(module: PhoneRecognizer, paths: list[Path], fold39: bool = True) -> list[list[str]]:
    """Decode each file with the module's decoding options."""
    results = []
    for path in paths:
        feats = features_for(module, read_audio(path))
        with torch.no_grad():
            lengths = torch.tensor([len(feats)])
            phones = module.decode(module(feats[None], lengths), lengths)[0]
        results.append(fold_to_39(phones) if fold39 else phones)
    return results


@hydra.main(version_base="1.3", config_path="../../conf", config_name="transcribe")
def main(cfg: DictConfig) -> None:
    audio = cfg.audio if isinstance(cfg.audio, ListConfig) else [cfg.audio]
    paths = [Path(str(p)).expanduser() for p in audio]
    module = load_recognizer(cfg.ckpt_path, cfg.get("decoding"))
    for path, phones in zip(paths, transcribe(module, paths, cfg.fold39), strict=True):
        print(f"{path}\t{' '.join(phones)}")


if __name__ == "__main__":
    main()
