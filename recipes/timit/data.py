"""TIMIT's data module: the toolkit's :class:`SpeechDataModule` with TIMIT's reader and phone maps.

>>> maps = label_maps(48, 39)
>>> maps.to_labels(["h#", "q", "ix"]), maps.to_reference(["h#", "q", "ix"])
(['sil', 'ix'], ['sil', 'ih'])
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import torch
from hydra.utils import instantiate

from recipes.timit.phones import map_phones, phone_set
from recipes.timit.prepare import prepare_corpus
from recipes.toolkit.data.datamodule import LabelMaps, SpeechDataModule


def label_maps(train_phones: int = 48, score_phones: int = 39) -> LabelMaps:
    """CTC targets in the ``train_phones`` set, references in the ``score_phones`` set."""
    return LabelMaps(
        labels=phone_set(train_phones),
        to_labels=partial(map_phones, target=train_phones),
        to_reference=partial(map_phones, target=score_phones),
    )


def timit_datamodule(
    data: Mapping,
    features: Mapping,
    seed: int = 0,
    prepare_workers: int = 1,
    augment: Mapping | None = None,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    kind: type[SpeechDataModule] = SpeechDataModule,
) -> SpeechDataModule:
    """The data module of the ``data`` and ``features`` configs (built-in corpus or real TIMIT);
    ``stats``: the global normalisation to use (a checkpoint's) instead of the training split's;
    ``kind``: the task's data module class (CTC targets by default)."""
    return kind(
        prepare=partial(prepare_corpus, data, features, prepare_workers, stats),
        maps=label_maps(int(data.get("train_phones", 48)), int(data.get("score_phones", 39))),
        max_frames=int(data["max_frames"]),
        seed=seed,
        num_workers=int(data.get("num_workers", 0)),
        augment=instantiate(augment) if augment else None,
        skip_bad=bool(data.get("skip_bad", False)),
    )
