"""The Lightning data module: prepared corpus -> padded batches under a frame budget, per rank."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import lightning as L
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from recipes.toolkit.data.augment import SpecAugment
from recipes.toolkit.data.prepared import PreparedCorpus, PreparedSplit
from recipes.toolkit.data.sampler import FrameBudgetBatchSampler
from recipes.toolkit.data.waveform_augment import WaveformAugment
from recipes.toolkit.data.waveform_features import AugmentedFeatures, EpochBatches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelMaps:
    """How a task turns an utterance's transcription into training targets and scoring references.

    ``labels`` is the training label set (CTC targets ``1..N``, 0 is blank); ``to_labels`` maps a
    transcription to symbols of that set, ``to_reference`` to the symbols it is scored on. Both
    must be picklable (module-level functions or ``functools.partial``) for DataLoader workers.

    >>> maps = LabelMaps(["a", "b"], to_labels=list, to_reference=list)
    >>> maps.index["b"]
    2
    """

    labels: list[str]
    to_labels: Callable[[list[str]], list[str]]
    to_reference: Callable[[list[str]], list[str]]

    @property
    def index(self) -> dict[str, int]:
        """Training label -> CTC target id (1-based)."""
        return {p: i + 1 for i, p in enumerate(self.labels)}


class UtteranceDataset(Dataset):
    """Utterances of one prepared split with CTC targets and scoring references."""

    def __init__(self, split: PreparedSplit, maps: LabelMaps):
        self.split = split
        self.maps = maps
        self._index = maps.index

    def target(self, i: int) -> torch.Tensor:
        """CTC targets of utterance ``i`` (made when asked: memory grows with the corpus's
        utterances only by what the prepared split holds)."""
        labels = self.maps.to_labels(self.split.phones[i])
        return torch.tensor([self._index[p] for p in labels], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.split.utt_ids)

    @staticmethod
    def min_frames(targets: list[int]) -> int:
        """Fewest frames a CTC alignment of ``targets`` needs: one per label, plus a blank
        between each pair of equal neighbours.

        >>> UtteranceDataset.min_frames([3, 3, 5, 5, 5, 2])
        9
        """
        return len(targets) + sum(a == b for a, b in zip(targets, targets[1:], strict=False))

    def __getitem__(self, i: int) -> dict:
        return {
            "feats": self.split.feats[i],
            "targets": self.target(i),
            "ref": self.maps.to_reference(self.split.phones[i]),
            "utt_id": self.split.utt_ids[i],
            "speaker": self.split.speakers[i],
        }


def collate(items: list[dict]) -> dict:
    """Pad features to ``[batch, time, features]``; concatenate CTC targets."""
    return {
        "feats": pad_sequence([it["feats"] for it in items], batch_first=True),
        "lengths": torch.tensor([len(it["feats"]) for it in items]),
        "targets": torch.cat([it["targets"] for it in items]),
        "target_lengths": torch.tensor([len(it["targets"]) for it in items]),
        "refs": [it["ref"] for it in items],
        "utt_ids": [it["utt_id"] for it in items],
        "speakers": [it["speaker"] for it in items],
    }


class SpeechDataModule(L.LightningDataModule):
    """A prepared corpus as frame-budget batches, sharded per DDP rank (any task, any corpus).

    Args:
        prepare: returns the prepared corpus (called once per process; the task's reader,
            feature cache and normalisation live behind it).
        maps: the task's label maps.
        max_frames: frame budget of a batch (batch size x longest utterance).
        seed: shuffling seed of the training batches.
        num_workers: DataLoader workers.
        augment: masking applied to training batches after transfer (a :class:`SpecAugment`),
            or a :class:`WaveformAugment`: the training split's features are then computed from
            each utterance's augmented audio, item by item (:mod:`.waveform_features`),
            normalised as the cached ones; dev and test keep the cache. None: no augmentation.
        skip_bad: leave out (listed in ``corpus.skipped``) training utterances too short for
            their targets (``dataset_class.min_frames``) instead of refusing the corpus.

    Evaluation batches are split across ranks without repetition, so a PER summed over ranks
    equals the single-process PER. A task with other targets subclasses it and sets
    ``dataset_class`` and ``collate_fn``; one whose targets are frame by frame sets
    ``frame_targets`` (it refuses a waveform augmentation: speed perturbation moves the frames).
    """

    dataset_class: type[UtteranceDataset] = UtteranceDataset
    collate_fn = staticmethod(collate)
    frame_targets: bool = False

    def __init__(
        self,
        prepare: Callable[[], PreparedCorpus],
        maps: LabelMaps,
        max_frames: int,
        seed: int = 0,
        num_workers: int = 0,
        augment: SpecAugment | WaveformAugment | None = None,
        skip_bad: bool = False,
    ):
        super().__init__()
        if isinstance(augment, WaveformAugment) and self.frame_targets:
            raise ValueError(
                "augment=waveform changes the number of frames (speed perturbation), and this "
                "task's frame targets do not follow it: use augment=specaugment or augment=null "
                "(or, for the CTC task, frame_loss_weight=0: CTC alone needs no frame targets)"
            )
        self.prepare = prepare
        self.maps = maps
        self.max_frames = int(max_frames)
        self.seed = seed
        self.num_workers = int(num_workers)
        self.augment = augment
        self.skip_bad = skip_bad
        self.corpus: PreparedCorpus | None = None
        self.eval_split = "test"  # what test_dataloader() serves: dev, test or train

    @property
    def phones(self) -> list[str]:
        """The training label set."""
        return list(self.maps.labels)

    def prepare_data(self) -> None:
        self.load()

    def setup(self, stage: str | None = None) -> None:
        self.load()

    def load(self) -> PreparedCorpus:
        """Prepare (or load from the cache) every split once per process."""
        if self.corpus is None:
            self.corpus = self.drop_untrainable(self.prepare())
        return self.corpus

    def drop_untrainable(self, corpus: PreparedCorpus) -> PreparedCorpus:
        """Refuse (or with ``skip_bad`` leave out, listed) training utterances with fewer frames
        than their targets need: every batch holding one would be a non-finite loss."""
        split = corpus.splits.get("train")
        if split is None:
            return corpus
        index = self.maps.index
        problems, keep = [], []
        for i, (utt_id, frames, phones) in enumerate(
            zip(split.utt_ids, split.num_frames, split.phones, strict=True)
        ):
            targets = [index[p] for p in self.maps.to_labels(phones)]
            need = self.dataset_class.min_frames(targets)
            if frames < need:
                problems.append(
                    (f"train/{utt_id}", f"{frames} frames, fewer than the {need} its "
                     f"{len(targets)} labels need")
                )  # fmt: skip
            else:
                keep.append(i)
        if not problems:
            return corpus
        listing = "\n  ".join(f"{where}: {why}" for where, why in problems)
        if not self.skip_bad:
            raise ValueError(
                f"{len(problems)} training utterance(s) cannot be trained on (data.skip_bad=true "
                f"leaves them out):\n  {listing}"
            )
        log.warning("left out %d untrainable training utterance(s):\n  %s", len(problems), listing)
        corpus.splits["train"] = split.subset(keep)
        corpus.skipped = [*corpus.skipped, *problems]
        return corpus

    @property
    def feature_dim(self) -> int:
        return self.load().feature_dim

    def dataset(self, split: str) -> UtteranceDataset:
        corpus = self.load()
        if split not in corpus.splits:
            raise KeyError(f"unknown split {split!r}; choose one of {sorted(corpus.splits)}")
        return self.dataset_class(corpus.splits[split], self.maps)

    def train_label_sequences(self) -> list[list[int]]:
        """CTC targets of the training split (for the phone bigram)."""
        dataset = self.dataset("train")
        return [dataset.target(i).tolist() for i in range(len(dataset))]

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = self.dataset(split)
        rank, world = self._rank_and_world()
        lengths = dataset.split.num_frames
        max_frames = self.max_frames
        if train and isinstance(self.augment, WaveformAugment):
            return self._waveform_loader(dataset, rank, world)
        if train:
            sampler = FrameBudgetBatchSampler(
                lengths, max_frames, shuffle=True, seed=self.seed, num_replicas=world, rank=rank
            )
        else:
            # split so that every rank gets at least one batch (a rank without any would hang
            # the metric sync), then deal them out without repetition
            everyone = FrameBudgetBatchSampler(
                lengths, max_frames, shuffle=False, num_replicas=world
            )
            sampler = everyone.global_batches()[rank::world]
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
        )

    def _waveform_loader(self, dataset: UtteranceDataset, rank: int, world: int) -> DataLoader:
        """Training batches of features computed from augmented audio; the frame budget holds
        for the fastest speed (each length scaled by it, plus a frame of rounding)."""
        augment = self.augment
        assert isinstance(augment, WaveformAugment)
        features = self.load().features
        if features is None:
            raise ValueError("augment=waveform needs the corpus's feature settings "
                             "(PreparedCorpus.features)")  # fmt: skip
        scale = max(augment.max_speed, 100) / 100
        lengths = [math.ceil(n * scale) + (scale != 1) for n in dataset.split.num_frames]
        sampler = FrameBudgetBatchSampler(
            lengths, self.max_frames, shuffle=True, seed=self.seed, num_replicas=world, rank=rank
        )
        return DataLoader(
            AugmentedFeatures(dataset, augment, features, self.seed),
            batch_sampler=EpochBatches(sampler),
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("dev", train=False)

    def test_dataloader(self) -> DataLoader:
        """Loader over ``self.eval_split`` (set it to evaluate dev, test or train)."""
        return self._loader(self.eval_split, train=False)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if isinstance(self.augment, WaveformAugment):
            return batch  # augmented before its features were computed
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            batch["feats"] = self.augment(batch["feats"], batch["lengths"])
        return batch
