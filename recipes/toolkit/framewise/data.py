"""Framewise data: one phone target per frame, from the segments of each utterance.

A frame's target is the training label of the segment holding its centre sample (the
corpus's segments mapped with the task's label maps; a deleted label's frames go to the
segment after it). Padded frames get :data:`IGNORE_INDEX`.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence

from recipes.toolkit.data.datamodule import LabelMaps, SpeechDataModule, UtteranceDataset, collate
from recipes.toolkit.data.prepared import PreparedSplit
from recipes.toolkit.data.segments import frame_labels, relabel_segments

IGNORE_INDEX = -100  # target of padded frames (cross-entropy's ignore_index)


class FramewiseDataset(UtteranceDataset):
    """Utterances with per-frame targets (0-based training labels) besides the CTC-style ones.

    ``reference_segments(i)`` are the segments in seconds in the training label set (for
    boundary accuracy), or ``None`` when the corpus gives no times.
    """

    def __init__(self, split: PreparedSplit, maps: LabelMaps):
        super().__init__(split, maps)
        self.label_index = {label: i for i, label in enumerate(maps.labels)}
        self.num_frames = split.num_frames

    def to_label(self, symbol: str) -> str | None:
        """The training label of a corpus symbol (None: deleted)."""
        mapped = self.maps.to_labels([symbol])
        return mapped[0] if mapped else None

    def frame_targets(self, i: int) -> torch.Tensor:
        """The 0-based training label of every frame of utterance ``i`` (made when asked)."""
        segments = relabel_segments(self.split.segments[i], self.to_label)
        return frame_labels(segments, self.num_frames[i], 1, 1, self.label_index)

    def reference_segments(self, i: int) -> list | None:
        """Utterance ``i``'s segments in seconds in the training label set (None: no times)."""
        if self.split.times is None:
            return None
        return relabel_segments(self.split.times[i], self.to_label)

    @staticmethod
    def min_frames(targets: list[int]) -> int:
        """Any utterance with a frame can be trained on: every frame has its own target."""
        return 1

    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        item["frame_targets"] = self.frame_targets(i)
        item["reference_segments"] = self.reference_segments(i)
        return item


def collate_frames(items: list[dict]) -> dict:
    """:func:`~recipes.toolkit.data.datamodule.collate` plus ``frame_targets [batch, time]``
    (padded with :data:`IGNORE_INDEX`) and the reference segments."""
    batch = collate(items)
    batch["frame_targets"] = pad_sequence(
        [it["frame_targets"] for it in items], batch_first=True, padding_value=IGNORE_INDEX
    )
    batch["reference_segments"] = [it["reference_segments"] for it in items]
    return batch


class FramewiseDataModule(SpeechDataModule):
    """:class:`~recipes.toolkit.data.datamodule.SpeechDataModule` serving frame targets."""

    dataset_class = FramewiseDataset
    collate_fn = staticmethod(collate_frames)
    frame_targets = True  # augment=waveform refused: speed perturbation would move the frames

    def train_phone_sequences(self) -> list[list[int]]:
        """Training transcriptions as 0-based label sequences (for the phone bigram)."""
        return [[label - 1 for label in labels] for labels in self.train_label_sequences()]

    def train_frame_counts(self) -> torch.Tensor:
        """Frames per training label over the training split (for the class prior)."""
        dataset, counts = (
            self.dataset("train"),
            torch.zeros(len(self.maps.labels), dtype=torch.float64),
        )
        for i in range(len(dataset)):
            counts += torch.bincount(dataset.frame_targets(i), minlength=len(counts))
        return counts
