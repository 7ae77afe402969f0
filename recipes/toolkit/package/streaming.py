"""Streaming recognition for causal CTC models: audio in chunks, phones out as they are final.

A unidirectional CTC recogniser without a convolutional front end sees no future frame, so its
output at a frame is final as soon as the frame is computed. :class:`StreamingRecognizer` keeps
the samples that do not yet fill an analysis window, computes the features of every window that
is complete (the same frames, at the same positions, as for the whole utterance: each frame is
its own window, and global normalisation is per frame), runs the encoder on them from the
recurrent state the previous chunk left, and emits each phone of the greedy CTC path at the
frame it starts on. :meth:`StreamingRecognizer.finish` gives the timed phones of the whole
utterance, the same as :meth:`PhoneRecognizer.transcribe` (tested).

>>> from recipes.toolkit.package.runtime import PhoneRecognizer, random_config
>>> from recipes.toolkit.model import AcousticModel
>>> config = random_config(["a", "b"])
>>> config["rnn"]["bidirectional"] = False
>>> model = AcousticModel(config["feature_dim"], config["num_outputs"], config["rnn"])
>>> stream = StreamingRecognizer(PhoneRecognizer(config, model))
>>> wave = torch.randn(16000) * 1000
>>> early = [p for chunk in wave.split(1600) for p in stream.accept(chunk)]
>>> [t.phone for t in stream.finish()] == early
True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from recipes.toolkit.package.features import compute_fbank, normalise
from recipes.toolkit.package.runtime import PhoneRecognizer
from recipes.toolkit.package.timing import TimedPhone, ctc_segments, map_segments, to_seconds

BLANK = 0


class StreamingRecognizer:
    """Greedy CTC decoding of audio fed chunk by chunk (16 kHz, int16 scale, mono).

    Args:
        recognizer: a CTC :class:`PhoneRecognizer` whose encoder is unidirectional, without a
            convolutional front end, on filterbanks without deltas or dither, normalised
            globally or not at all (anything else needs frames that have not arrived yet).
        score: emit phones of the scoring set (e.g. TIMIT's 39), else of the training set.
    """

    def __init__(self, recognizer: PhoneRecognizer, score: bool = True) -> None:
        problems = streaming_problems(recognizer)
        if problems:
            raise ValueError("this model cannot stream: " + "; ".join(problems))
        self.recognizer = recognizer
        self.score = score
        self.reset()

    def reset(self) -> None:
        """Start a new utterance."""
        self._pending = torch.zeros(0)  # samples not yet in a complete window
        self._state: Tensor | None = None
        self._path: list[int] = []  # the greedy CTC path so far

    @property
    def frames(self) -> int:
        """Frames computed so far."""
        return len(self._path)

    def accept(self, chunk: Tensor) -> list[str]:
        """Feed ``chunk`` (``[samples]``); return the phones that start in it, now final."""
        settings = self.recognizer.feature_settings
        length, shift = settings.length_samples, settings.shift_samples
        samples = torch.cat([self._pending, torch.as_tensor(chunk, dtype=torch.float32).flatten()])
        count = 0 if len(samples) < length else 1 + (len(samples) - length) // shift
        self._pending = samples[count * shift :]
        if count == 0:
            return []
        window = samples[: (count - 1) * shift + length].unsqueeze(0)
        feats = normalise(compute_fbank(window, settings), settings,
                          self.recognizer.feature_mean, self.recognizer.feature_std)  # fmt: skip
        path = self._forward(feats)
        before = self._path[-1] if self._path else BLANK
        self._path.extend(path)
        phones = []
        for label in path:
            if label != BLANK and label != before:
                phones.append(self.recognizer.phones[label - 1])
            before = label
        return self._scored(phones)

    def finish(self) -> list[TimedPhone]:
        """The timed phones of the utterance fed since :meth:`reset` (then reset)."""
        settings = self.recognizer.feature_settings
        segments = [(a, b, self.recognizer.phones[label - 1])
                    for a, b, label in ctc_segments(self._path)]  # fmt: skip
        timed = to_seconds(segments, len(self._path), settings.length_samples,
                           settings.shift_samples, 16000)  # fmt: skip
        self.reset()
        return map_segments(timed, self.recognizer.score_map) if self.score else timed

    def _forward(self, feats: Tensor) -> list[int]:
        model = self.recognizer.model
        x = feats.unsqueeze(0).to(self.recognizer.device)
        with torch.no_grad():
            encoded, self._state = model.encoder(x, hx=self._state)
            log_probs = F.log_softmax(model.output(encoded), dim=-1)[0]
        return log_probs.argmax(dim=-1).tolist()

    def _scored(self, phones: list[str]) -> list[str]:
        """``phones`` in the scoring set as they are emitted (a deleted phone is dropped; equal
        neighbours stay apart, as in scoring)."""
        score_map = self.recognizer.score_map
        if not self.score or score_map is None:
            return phones
        return [score_map.get(p, p) for p in phones if score_map.get(p, p)]


def streaming_problems(recognizer: PhoneRecognizer) -> list[str]:
    """Why ``recognizer`` cannot stream (empty: it can)."""
    problems = []
    config, settings = recognizer.config, recognizer.feature_settings
    if recognizer.task != "ctc":
        problems.append(f"the {recognizer.task} task decodes whole utterances (Viterbi)")
    if config["rnn"].get("bidirectional", False):
        problems.append("the encoder is bidirectional (it reads the utterance backwards too)")
    if recognizer.model.frontend is not None:
        problems.append("the convolutional front end looks at later frames")
    if settings.deltas:
        problems.append("delta features need later frames")
    if settings.dither:
        problems.append("dither makes the features random")
    if settings.normalization == "speaker":
        problems.append("speaker normalisation needs the whole utterance's statistics")
    if config.get("decoding", {}).get("method", "greedy") != "greedy":
        problems.append("streaming decodes greedily (decoding.method=greedy)")
    return problems
