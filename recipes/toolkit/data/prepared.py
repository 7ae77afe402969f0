"""A prepared corpus: normalised features and transcriptions of every split.

The features are a sequence of ``[frames, dim]`` tensors: a memory-mapped
:class:`~recipes.toolkit.data.feature_store.FeatureStore` from the cache, or a list in memory;
transcriptions are lists per utterance, packed
(:class:`~recipes.toolkit.data.packed.PackedLists`) or plain.

>>> s = PreparedSplit(["u1"], ["spk"], [torch.zeros(3, 40)], [["h#"]], [[(0, 3, "h#")]])
>>> s.num_frames
[3]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from recipes.toolkit.data.feature_config import FeatureConfig
from recipes.toolkit.data.feature_store import FeatureStore
from recipes.toolkit.data.packed import subset


@dataclass
class PreparedSplit:
    """Features and transcriptions of one split, in the corpus's own symbols."""

    utt_ids: Sequence[str]  # a list, or packed (PackedStrings) by a corpus reader
    speakers: Sequence[str]
    feats: Sequence[torch.Tensor]  # [T, F] float32, normalised (a FeatureStore or a list)
    phones: Sequence[list[str]]  # transcription (before the task's label maps)
    segments: Sequence[list[tuple[int, int, str]]]  # frame segments of the transcription
    # the transcription's segments in seconds, as the corpus gives them (alignment references)
    times: Sequence[list[tuple[float, float, str]]] | None = None
    # each utterance's audio file, where the corpus gives them (features computed on the fly)
    wavs: Sequence[str] | None = None

    def __len__(self) -> int:
        return len(self.utt_ids)

    @property
    def num_frames(self) -> list[int]:
        """Frames per utterance (without reading the features of a store)."""
        if isinstance(self.feats, FeatureStore):
            return self.feats.lengths
        return [f.shape[0] for f in self.feats]

    def subset(self, keep: list[int]) -> PreparedSplit:
        """The utterances at positions ``keep``, in that order.

        >>> s = PreparedSplit(["a", "b"], ["x", "y"], [torch.zeros(1, 2)] * 2, [[], []], [[], []])
        >>> s.subset([1]).utt_ids
        ['b']
        """
        return PreparedSplit(
            utt_ids=subset(self.utt_ids, keep),
            speakers=subset(self.speakers, keep),
            feats=subset(self.feats, keep),
            phones=subset(self.phones, keep),
            segments=subset(self.segments, keep),
            times=None if self.times is None else subset(self.times, keep),
            wavs=None if self.wavs is None else subset(self.wavs, keep),
        )


@dataclass
class PreparedCorpus:
    """All splits plus what the model needs to know about them."""

    splits: dict[str, PreparedSplit]
    feature_dim: int
    train_phones: list[str]  # the training label set, sorted
    summary: str
    root: Path | None = None
    stats: tuple[torch.Tensor, torch.Tensor] | None = None  # training mean, std (global norm.)
    identity: dict[str, str] | None = None  # what the corpus is (kind, root, training list hash)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) left out
    features: FeatureConfig | None = None  # the settings the features were computed with
