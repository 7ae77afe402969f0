"""Use what you trained: phones with their times, and posteriors, from a checkpoint or a package.

:class:`Recognizer` is the runtime of a packaged model
(:class:`~recipes.toolkit.package.runtime.PhoneRecognizer`) with constructors for what training
leaves behind: a Lightning checkpoint of either task (its own features, normalisation, phone
set, scoring map and decoding options) or an already loaded recogniser. The ``transcribe``
entry point decodes through it, and a packaged model runs the same runtime code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from omegaconf import DictConfig, OmegaConf

from recipes.toolkit.package.convert import runtime_config
from recipes.toolkit.package.runtime import PhoneRecognizer, TimedPhone
from recipes.toolkit.recognizer import SpeechRecognizer
from recipes.toolkit.workflow import load_recognizer

__all__ = ["Recognizer", "TimedPhone"]


class Recognizer(PhoneRecognizer):
    """Timed phones (:class:`TimedPhone`), posteriors and batches of them for audio files or
    waveforms; see :class:`~recipes.toolkit.package.runtime.PhoneRecognizer` for the methods.

    Example (a fresh CTC recogniser, untrained):
        >>> import torch
        >>> from recipes.toolkit.ctc.module import CTCRecognizer
        >>> module = CTCRecognizer(["a", "b"], 40, {"name": "gru", "hidden_size": 8})
        >>> recognizer = Recognizer.from_module(module)
        >>> recognizer.labels
        ['<blank>', 'a', 'b']
        >>> wave = torch.randn(8000) * 1000  # 0.5 s at 16 kHz, int16 scale
        >>> recognizer.posteriors(wave).shape
        torch.Size([48, 3])
        >>> batch = recognizer.transcribe_batch([wave, wave[:4000]])
        >>> len(batch), all(p.end <= 0.5 for phones in batch for p in phones)
        (2, True)
    """

    @classmethod
    def from_module(cls, module: SpeechRecognizer) -> Recognizer:
        """The recogniser of a loaded (or freshly built) training module; shares its model."""
        return cls(runtime_config(module), module.model)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        decoding: Mapping | None = None,
        fill_missing: Callable[[dict], dict] | None = None,
    ) -> Recognizer:
        """Load a training checkpoint of either task (``best.ckpt``, ``last.ckpt``).

        ``decoding`` overrides its decoding options (``{"method": "beam", "beam_width": 16}``);
        ``fill_missing`` gives what checkpoints of an older release lack (for TIMIT,
        :func:`recipes.timit.checkpoints.implied_hparams`: the 48 -> 39 scoring map).
        """
        if isinstance(decoding, DictConfig):
            decoding = OmegaConf.to_container(decoding, resolve=True)
        return cls.from_module(load_recognizer(path, decoding, fill_missing=fill_missing))

    @classmethod
    def from_package(
        cls, directory: str | os.PathLike, decoding: Mapping | None = None
    ) -> Recognizer:
        """Load a packaged model (:mod:`recipes.toolkit.package.export`) with the repository's
        runtime; the folder's own copy of it gives the same results without the repository."""
        return cls.from_directory(directory, decoding)
