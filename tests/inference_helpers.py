"""Recognisers with random weights, saved as the checkpoints a training run writes (no training).

The weights, the batch-norm statistics, the feature statistics and the decoders' bigram or phone
loop are all drawn at random, so that posteriors, decodings and times are not trivial.
"""

from __future__ import annotations

from pathlib import Path

import lightning
import numpy as np
import soundfile as sf
import torch
from omegaconf import OmegaConf

from recipes.timit.phones import phone_set, scoring_map
from recipes.toolkit.ctc.decoding import BigramLM
from recipes.toolkit.ctc.module import CTCRecognizer
from recipes.toolkit.framewise.module import FramewiseRecognizer
from recipes.toolkit.recognizer import SpeechRecognizer
from recipes.toolkit.workflow import build_recognizer

PHONES = phone_set(48)
CORPUS = {"name": "builtin", "root": "/data/builtin_timit", "train_list": "0123abcd"}
CTC_RNN = {"name": "ligru", "hidden_size": 24, "num_layers": 2, "bidirectional": True,
           "dropout": 0.15, "nonlinearity": "tanh", "normalization": "batchnorm"}  # fmt: skip
FRAMEWISE_RNN = {"name": "lstm", "hidden_size": 16, "num_layers": 1, "bidirectional": True}
CTC_FEATURES = {"num_mel_bins": 40, "deltas": 0, "normalization": "global"}
FRAMEWISE_FEATURES = {"num_mel_bins": 23, "deltas": 2, "normalization": "speaker"}
VITERBI = {"method": "viterbi", "acoustic_scale": 1.0, "prior_scale": 0.5, "self_loop_prob": 0.85}


def build(
    task: str, seed: int = 0, frontend: list[int] | None = None, model: dict | None = None
) -> SpeechRecognizer:
    """A recogniser of TIMIT's 48 phones scored on 39, as ``build_recognizer`` makes it for
    training, with random weights, buffers and decoders; ``model`` adds to the model settings
    (e.g. the CRDNN's ``conv2d_channels``)."""
    torch.manual_seed(seed)
    ctc = task == "ctc"
    features = CTC_FEATURES if ctc else FRAMEWISE_FEATURES
    dim = features["num_mel_bins"] * (1 + features["deltas"])
    cfg = OmegaConf.create(
        {
            "rnn": CTC_RNN if ctc else FRAMEWISE_RNN,
            "model": {"frontend_channels": frontend or [], "output_dropout": 0.15,
                      **(model or {})},
            "optim": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.002},
            "scheduler": {},
            "decoding": {"method": "greedy"} if ctc else VITERBI,
            "max_bad_steps": 5,
            "features": {"frame_length_ms": 25.0, "frame_shift_ms": 10.0, **features},
        }
    )
    stats = (torch.randn(dim, dtype=torch.float64) + 10.0, torch.rand(dim, dtype=torch.float64) + 1)
    kind = CTCRecognizer if ctc else FramewiseRecognizer
    module = build_recognizer(cfg, PHONES, dim, scoring_map(48), CORPUS, stats, recognizer=kind)
    with torch.no_grad():
        for name, buffer in module.model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0.0, 0.3)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
        for parameter in module.model.parameters():
            parameter.mul_(3.0)  # peakier posteriors than at initialisation
    generator = np.random.default_rng(seed)
    sequences = [generator.integers(0, len(PHONES), size=20).tolist() for _ in range(30)]
    if ctc:
        module.set_bigram(BigramLM.estimate([[p + 1 for p in s] for s in sequences], 49))
    else:
        counts = torch.tensor(generator.integers(1, 100, size=len(PHONES)), dtype=torch.float64)
        module.set_phone_loop(sequences, counts)
    return module.eval()


def save_checkpoint(module: SpeechRecognizer, path: Path) -> Path:
    """``module`` saved with what ``load_recognizer`` reads of a Lightning checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": lightning.__version__,
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "recognizer": type(module).__name__,
    }
    torch.save(checkpoint, path)
    return path


def write_audio(folder: Path) -> list[Path]:
    """Four files: a 16 kHz PCM WAV, an 8 kHz FLAC, a 24-bit stereo WAV at 22.05 kHz, and a
    16 kHz WAV just long enough for three frames; noise shaped into louder and quieter parts."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = np.random.default_rng(3)

    def signal(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
        n = int(seconds * rate)
        envelope = 0.05 + 0.3 * (np.sin(np.linspace(0, 12 * np.pi, n)) > 0)
        return (generator.standard_normal((n, channels)) * envelope[:, None] * 0.3).clip(-1, 1)

    files = [folder / "a.wav", folder / "b.flac", folder / "c.wav", folder / "d.wav"]
    sf.write(files[0], signal(1.2, 16000), 16000, subtype="PCM_16")
    sf.write(files[1], signal(0.9, 8000), 8000, subtype="PCM_16")
    sf.write(files[2], signal(0.7, 22050, channels=2), 22050, subtype="PCM_24")
    sf.write(files[3], signal(0.045, 16000), 16000, subtype="PCM_16")
    return files
