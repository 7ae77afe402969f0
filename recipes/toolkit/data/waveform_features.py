"""Training features computed afresh from augmented audio, for every item it serves.

:class:`AugmentedFeatures` wraps a training dataset: each item's features are the filterbank
(:func:`~recipes.toolkit.data.feature_config.compute_fbank`, the cache's own) of its audio after
:class:`~recipes.toolkit.data.waveform_augment.WaveformAugment`, normalised as the cached item is
(:meth:`~recipes.toolkit.data.feature_store.FeatureStore.normalize_item`: the same training or
speaker statistics). Items are asked for as ``(epoch, index)`` pairs, which :class:`EpochBatches`
makes of a batch sampler's batches: the augmentation's generator is seeded from the run's seed,
the epoch and the index, in the main process and in DataLoader workers alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from recipes.toolkit.data.feature_config import FeatureConfig, compute_fbank
from recipes.toolkit.data.feature_store import FeatureStore
from recipes.toolkit.data.features import load_waveform
from recipes.toolkit.data.waveform_augment import WaveformAugment, item_generator


class EpochBatches(Sampler[list[tuple[int, int]]]):
    """The batches of ``sampler`` (a batch sampler with ``epoch`` and ``set_epoch``) as lists of
    ``(epoch, index)``. The wrapped sampler is ``.sampler``, where Lightning sets the epoch of a
    batch sampler's sampler at the start of every epoch.

    >>> from recipes.toolkit.data.sampler import FrameBudgetBatchSampler
    >>> batches = EpochBatches(FrameBudgetBatchSampler([3, 4, 9], max_frames=9, shuffle=False))
    >>> batches.sampler.set_epoch(2)
    >>> sorted(list(batches))
    [[(2, 0), (2, 1)], [(2, 2)]]
    """

    def __init__(self, sampler) -> None:
        self.sampler = sampler

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = int(self.sampler.epoch)
        for batch in self.sampler:
            yield [(epoch, int(i)) for i in batch]

    def __len__(self) -> int:
        return len(self.sampler)


class AugmentedFeatures(Dataset):
    """``dataset``'s items (``dataset.split``: a prepared split with ``wavs`` and features in a
    :class:`FeatureStore`) with ``feats`` recomputed from the augmented audio; item
    ``(epoch, i)`` is augmented by the generator of ``(seed, epoch, i)``.

    An augmented utterance with fewer frames than its CTC targets need (``dataset.min_frames``;
    a faster copy of a short one) gets the features of its clean audio instead.
    """

    def __init__(
        self, dataset, augment: WaveformAugment, features: FeatureConfig, seed: int = 0
    ) -> None:
        split = dataset.split
        if split.wavs is None:
            raise ValueError("augment=waveform needs the training utterances' audio files, and "
                             "this prepared corpus names none")  # fmt: skip
        if not isinstance(split.feats, FeatureStore):
            raise ValueError("augment=waveform normalises like the feature cache: the training "
                             "features must be a FeatureStore")  # fmt: skip
        self.dataset = dataset
        self.split = split
        self.augment = augment
        self.config = features
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def _fbank(self, wave: Tensor, generator: torch.Generator) -> Tensor:
        if not self.config.dither:
            return compute_fbank(wave, self.config)
        seed = int(torch.randint(2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):  # torchaudio's dither draws from the global RNG
            torch.manual_seed(seed)
            return compute_fbank(wave, self.config)

    def features(self, i: int, epoch: int, min_frames: int = 1) -> Tensor:
        """Normalised ``[frames, dim]`` features of item ``i``'s audio augmented for ``epoch``."""
        generator = item_generator(self.seed, epoch, i)
        clean = load_waveform(Path(self.split.wavs[i]))
        raw = self._fbank(self.augment(clean, generator), generator)
        if raw.shape[0] < min_frames:
            raw = self._fbank(clean, generator)
        return self.split.feats.normalize_item(i, raw)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, i = key
        item = self.dataset[i]
        need = self.dataset.min_frames(item["targets"].tolist())
        item["feats"] = self.features(i, epoch, need)
        return item
