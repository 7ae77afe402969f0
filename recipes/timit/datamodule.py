"""The Lightning data module: prepared corpus -> padded batches under a frame budget, per rank."""

import logging
from collections.abc import Mapping

import lightning as L
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from recipes.timit.augment import SpecAugment
from recipes.timit.phones import map_phones, phone_set
from recipes.timit.prepare import PreparedCorpus, PreparedSplit, prepare_corpus
from recipes.timit.sampler import FrameBudgetBatchSampler

log = logging.getLogger("recipes.timit")


class UtteranceDataset(Dataset):
    """Utterances of one prepared split with CTC targets in the training phone set (1..N)."""

    def __init__(self, split: PreparedSplit, train_phones: int, score_phones: int = 39):
        index = {p: i + 1 for i, p in enumerate(phone_set(train_phones))}
        self.split = split
        self.targets = [
            torch.tensor([index[p] for p in map_phones(phones, train_phones)], dtype=torch.long)
            for phones in split.phones
        ]
        self.refs = [map_phones(phones, score_phones) for phones in split.phones]

    def __len__(self) -> int:
        return len(self.split.feats)

    def __getitem__(self, i: int) -> dict:
        return {
            "feats": self.split.feats[i],
            "targets": self.targets[i],
            "ref": self.refs[i],
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
        "refs39": [it["ref"] for it in items],
        "utt_ids": [it["utt_id"] for it in items],
        "speakers": [it["speaker"] for it in items],
    }


class TIMITDataModule(L.LightningDataModule):
    """Built-in or real TIMIT, features cached once, frame-budget batches sharded per DDP rank.

    Evaluation batches are split across ranks without repetition, so a PER summed over ranks
    equals the single-process PER.
    """

    def __init__(self, data: Mapping, features: Mapping, seed: int = 0, prepare_workers: int = 1):
        super().__init__()
        self.data_cfg = data
        self.features_cfg = features
        self.seed = seed
        self.prepare_workers = prepare_workers
        self.corpus: PreparedCorpus | None = None
        self.eval_split = "test"  # what test_dataloader() serves: dev, test or train
        self.augment = SpecAugment() if data.get("spec_augment", False) else None

    @property
    def phones(self) -> list[str]:
        return phone_set(int(self.data_cfg["train_phones"]))

    def prepare_data(self) -> None:
        self.load()

    def setup(self, stage: str | None = None) -> None:
        self.load()

    def load(self) -> PreparedCorpus:
        """Prepare (or load from the cache) every split once per process."""
        if self.corpus is None:
            self.corpus = prepare_corpus(self.data_cfg, self.features_cfg, self.prepare_workers)
        return self.corpus

    @property
    def feature_dim(self) -> int:
        return self.load().feature_dim

    def dataset(self, split: str) -> UtteranceDataset:
        corpus = self.load()
        if split not in corpus.splits:
            raise KeyError(f"unknown split {split!r}; choose one of {sorted(corpus.splits)}")
        return UtteranceDataset(
            corpus.splits[split],
            int(self.data_cfg["train_phones"]),
            int(self.data_cfg.get("score_phones", 39)),
        )

    def train_label_sequences(self) -> list[list[int]]:
        """CTC targets of the training split (for the phone bigram)."""
        return [t.tolist() for t in self.dataset("train").targets]

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = self.dataset(split)
        rank, world = self._rank_and_world()
        lengths = [len(f) for f in dataset.split.feats]
        max_frames = int(self.data_cfg["max_frames"])
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
            collate_fn=collate,
            num_workers=int(self.data_cfg.get("num_workers", 0)),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("dev", train=False)

    def test_dataloader(self) -> DataLoader:
        """Loader over ``self.eval_split`` (set it to evaluate dev, test or train)."""
        return self._loader(self.eval_split, train=False)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            batch["feats"] = self.augment(batch["feats"], batch["lengths"])
        return batch
