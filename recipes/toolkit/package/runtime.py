"""A trained phone recogniser at inference: audio -> features -> posteriors -> timed phones.

:class:`PhoneRecognizer` holds the acoustic model and what its training fixed (the feature
settings, the training data's normalisation, the phone set, the scoring map, the decoding
options and the decoder's bigram or phone loop) as one plain configuration, the ``config.json``
of a packaged model. It imports only torch, torchaudio, numpy, ``rnnlib`` and the modules an
exported folder carries, so the folder runs without the training code
(:mod:`recipes.toolkit.package.export`); in the repository,
:class:`recipes.toolkit.inference.Recognizer` builds the same object from a checkpoint.

``backend="onnx"`` (:meth:`PhoneRecognizer.from_directory`) takes the log-posteriors from the
package's ``model.onnx`` by onnxruntime, which is imported only then.

Audio is a file path (any format soundfile reads, any rate) or a waveform: ``[samples]`` or
``[channels, samples]`` at int16 scale (as :func:`read_audio` returns it), at ``sample_rate``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from recipes.toolkit.model import AcousticModel
from recipes.toolkit.package.audio import SAMPLE_RATE, as_waveform, check_long_enough, read_audio
from recipes.toolkit.package.decoders import CTCDecoder, FramewiseDecoder
from recipes.toolkit.package.features import FeatureConfig, compute_fbank, normalise
from recipes.toolkit.package.onnx_backend import BACKENDS, ONNX_FILE, OnnxAcousticModel
from recipes.toolkit.package.quantize import quantize_int8
from recipes.toolkit.package.timing import TimedPhone, map_segments, to_seconds

__all__ = ["PhoneRecognizer", "TimedPhone", "read_audio"]

FORMAT = "rnnlib-phone-recognizer"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.pt"
BLANK_SYMBOL = "<blank>"

Audio = str | os.PathLike | torch.Tensor | np.ndarray


def encode_tensor(tensor: torch.Tensor) -> list:
    """Nested lists of floats for JSON, ``None`` standing for ``-inf`` (log of zero).

    >>> encode_tensor(torch.tensor([0.5, -math.inf]))
    [0.5, None]
    """
    values = tensor.detach().cpu().double()
    if bool(torch.isnan(values).any() | (values == math.inf).any()):
        raise ValueError("only finite values and -inf can be written to the configuration")
    return _nested(values)


def _nested(values: torch.Tensor) -> list:
    if values.dim() == 0:
        raise ValueError("a scalar is not a tensor of the configuration")
    if values.dim() == 1:
        return [None if v == -math.inf else v for v in values.tolist()]
    return [_nested(row) for row in values]


def decode_tensor(values: Sequence, dtype: torch.dtype) -> torch.Tensor:
    """The inverse of :func:`encode_tensor`.

    >>> decode_tensor([[0.5, None]], torch.float64)
    tensor([[0.5000,   -inf]], dtype=torch.float64)
    """

    def restore(item):
        if isinstance(item, list):
            return [restore(x) for x in item]
        return -math.inf if item is None else float(item)

    return torch.tensor(restore(list(values)), dtype=torch.float64).to(dtype)


def random_config(phones: Sequence[str], task: str = "ctc", hidden_size: int = 8) -> dict:
    """A configuration for a model of ``phones`` with fresh weights (examples and tests): one
    bidirectional GRU layer, 40 filterbanks with zero-mean unit-variance normalisation,
    greedy or Viterbi decoding, no scoring map."""
    outputs = len(phones) + (1 if task == "ctc" else 0)
    config = {
        "format": FORMAT,
        "version": VERSION,
        "task": task,
        "phones": list(phones),
        "feature_dim": 40,
        "num_outputs": outputs,
        "rnn": {"name": "gru", "hidden_size": hidden_size, "bidirectional": True},
        "model": {},
        "features": FeatureConfig().to_dict(),
        "normalization": {"mean": [0.0] * 40, "std": [1.0] * 40},
        "score_map": None,
    }
    if task == "ctc":
        config["decoding"] = {"method": "greedy"}
        config["ctc_bigram"] = encode_tensor(torch.zeros(outputs, outputs))
    else:
        uniform = [-math.log(len(phones))] * len(phones)
        config["decoding"] = {"method": "viterbi", "acoustic_scale": 1.0, "prior_scale": 0.5,
                              "self_loop_prob": 0.85}  # fmt: skip
        config["phone_loop"] = {
            "log_bigram": encode_tensor(torch.zeros(len(phones), len(phones))),
            "log_initial": uniform,
            "log_prior": uniform,
        }
    return config


def build_decoder(config: Mapping) -> CTCDecoder | FramewiseDecoder:
    """The decoder of a configuration's task and decoding options."""
    if config["task"] == "ctc":
        bigram = config.get("ctc_bigram")
        table = None if bigram is None else decode_tensor(bigram, torch.float32)
        return CTCDecoder(config["phones"], config["decoding"], table)
    if config["task"] == "framewise":
        loop = config["phone_loop"]
        return FramewiseDecoder(
            config["phones"],
            config["decoding"],
            decode_tensor(loop["log_bigram"], torch.float64),
            decode_tensor(loop["log_initial"], torch.float64),
            decode_tensor(loop["log_prior"], torch.float64),
        )
    raise ValueError(f"unknown task {config['task']!r} (ctc | framewise)")


class PhoneRecognizer:
    """Timed phones and frame posteriors of audio, from a configuration and its acoustic model.

    Args:
        config: the packaged model's configuration (``config.json``; see
            :func:`recipes.toolkit.package.convert.runtime_config`).
        model: the acoustic model, ``[batch, time, features]`` -> log-probabilities.

    Attributes:
        phones: the training label set; ``labels``: the model's outputs (CTC: blank first).
        score_map: training label -> scoring label (``""`` deletes), or None.

    Example (a randomly initialised model, see :func:`random_config`):
        >>> from recipes.toolkit.model import AcousticModel
        >>> config = random_config(["a", "b"], task="ctc")
        >>> model = AcousticModel(40, 3, config["rnn"])
        >>> recognizer = PhoneRecognizer(config, model)
        >>> recognizer.posteriors(torch.randn(16000) * 1000).shape  # 98 frames, blank + 2 phones
        torch.Size([98, 3])
        >>> phones = recognizer.transcribe(torch.randn(16000) * 1000)
        >>> all(0.0 <= p.start < p.end <= 1.0 for p in phones)
        True
    """

    def __init__(self, config: Mapping, model: nn.Module) -> None:
        if config.get("format") != FORMAT or int(config.get("version", 0)) > VERSION:
            raise ValueError(
                f"not a configuration this runtime reads: format {config.get('format')!r} "
                f"version {config.get('version')!r} (expected {FORMAT!r} <= {VERSION})"
            )
        self.config = dict(config)
        self.task = str(config["task"])
        self.phones = list(config["phones"])
        self.feature_settings = FeatureConfig.from_mapping(config["features"])
        self.feature_mean = decode_tensor(config["normalization"]["mean"], torch.float64)
        self.feature_std = decode_tensor(config["normalization"]["std"], torch.float64)
        score_map = config.get("score_map")
        self.score_map = None if score_map is None else dict(score_map)
        self.decoder = build_decoder(config)
        self.model = model.eval()

    @classmethod
    def from_directory(
        cls, directory: str | os.PathLike, decoding: Mapping | None = None, backend: str = "torch"
    ) -> PhoneRecognizer:
        """Load a packaged model: ``config.json`` and the acoustic model's ``weights.pt``;
        ``decoding`` overrides some of its decoding options (e.g. ``{"method": "beam"}``).
        ``backend="onnx"`` runs the package's ``model.onnx`` with onnxruntime instead (a package
        exported with ``onnx=true``; :mod:`recipes.toolkit.package.onnx_backend`)."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        folder = Path(directory)
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        if decoding:
            config["decoding"] = {**config["decoding"], **dict(decoding)}
        if backend == "onnx":
            if not (folder / ONNX_FILE).is_file():
                raise FileNotFoundError(f"{folder / ONNX_FILE}: export the package with onnx=true")
            return cls(config, OnnxAcousticModel(folder / ONNX_FILE))
        model = AcousticModel(
            int(config["feature_dim"]), int(config["num_outputs"]), config["rnn"],
            **config["model"],
        )  # fmt: skip
        quantized = config.get("quantization", "none") == "int8"
        if quantized:
            model = quantize_int8(model)  # the stored weights are the quantised model's
        # quantised weights are packed objects, which torch's weights-only loader refuses
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=not quantized)
        model.load_state_dict(state)
        return cls(config, model)

    @property
    def labels(self) -> list[str]:
        """The symbol of each output of :meth:`posteriors` (CTC: ``<blank>`` first)."""
        return [BLANK_SYMBOL, *self.phones] if self.task == "ctc" else list(self.phones)

    @property
    def device(self) -> torch.device:
        parameter = next(self.model.parameters(), None)  # none: the onnx backend (CPU)
        return torch.device("cpu") if parameter is None else parameter.device

    def to(self, device: str | torch.device) -> PhoneRecognizer:
        """Run the acoustic model on ``device`` (features and decoding stay on the CPU)."""
        if getattr(self.model, "cpu_only", False) and torch.device(device).type != "cpu":
            raise ValueError("the onnx backend runs on the CPU")
        self.model.to(device)
        return self

    # ----- audio -> features -------------------------------------------------------------------
    def waveform(self, audio: Audio, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
        """``[1, N]`` at 16 kHz of a path or waveform; ``ValueError`` (naming it) when it is
        shorter than one analysis frame, ``FileNotFoundError`` for a missing file."""
        if isinstance(audio, str | os.PathLike):
            name, wave = str(audio), read_audio(Path(audio))
        else:
            name, wave = "waveform", as_waveform(audio, sample_rate)
        check_long_enough(name, wave.shape[-1], self.feature_settings)
        return wave

    def features(self, audio: Audio, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
        """``[frames, dim]`` features normalised as in training."""
        wave = self.waveform(audio, sample_rate)
        raw = compute_fbank(wave, self.feature_settings)
        return normalise(raw, self.feature_settings, self.feature_mean, self.feature_std)

    # ----- features -> posteriors --------------------------------------------------------------
    def posteriors(self, audio: Audio, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
        """``[frames, len(labels)]`` log-posteriors (float32, on the CPU)."""
        return self.posteriors_batch([audio], sample_rate)[0]

    def posteriors_batch(
        self, audios: Sequence[Audio], sample_rate: int = SAMPLE_RATE, batch_size: int = 8
    ) -> list[torch.Tensor]:
        """:meth:`posteriors` of each item, ``batch_size`` utterances per forward pass (padded;
        padding does not change the valid frames' outputs beyond float rounding)."""
        feats = [self.features(audio, sample_rate) for audio in audios]
        out: list[torch.Tensor] = []
        for first in range(0, len(feats), max(1, batch_size)):
            out.extend(self.forward(feats[first : first + max(1, batch_size)]))
        return out

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Log-posteriors of normalised feature sequences, in one padded batch."""
        device = self.device
        lengths = torch.tensor([len(f) for f in feats])
        batch = nn.utils.rnn.pad_sequence(list(feats), batch_first=True).to(device)
        with torch.no_grad():
            log_probs = self.model(batch, lengths.to(device)).float().cpu()
        return [log_probs[b, : int(n)] for b, n in enumerate(lengths)]

    # ----- posteriors -> phones ----------------------------------------------------------------
    def timed_phones(self, log_probs: torch.Tensor, score: bool = True) -> list[TimedPhone]:
        """Decoded phones of one utterance's ``[frames, labels]`` log-posteriors with their
        times; ``score``: mapped to the scoring set."""
        settings = self.feature_settings
        segments = self.decoder.segments(log_probs)
        timed = to_seconds(segments, len(log_probs), settings.length_samples,
                           settings.shift_samples, SAMPLE_RATE)  # fmt: skip
        return map_segments(timed, self.score_map) if score else timed

    def transcribe(
        self, audio: Audio, score: bool = True, sample_rate: int = SAMPLE_RATE
    ) -> list[TimedPhone]:
        """The phones of one file or waveform with their start and end times (seconds);
        ``score``: in the scoring set (e.g. TIMIT's 39 phones), else the training set."""
        return self.timed_phones(self.posteriors(audio, sample_rate), score)

    def transcribe_batch(
        self,
        audios: Sequence[Audio],
        score: bool = True,
        sample_rate: int = SAMPLE_RATE,
        batch_size: int = 8,
    ) -> list[list[TimedPhone]]:
        """:meth:`transcribe` of each item, the acoustic model run on batches of them."""
        posteriors = self.posteriors_batch(audios, sample_rate, batch_size)
        return [self.timed_phones(log_probs, score) for log_probs in posteriors]
