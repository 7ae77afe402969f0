"""The single data entry point of the recipe: corpus -> validated utterances -> cached features.

>>> s = PreparedSplit(["u1"], ["spk"], [torch.zeros(3, 40)], [["h#"]], [[(0, 3, "h#")]])
>>> s.num_frames
[3]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from recipes.timit.corpus import read_timit, summary
from recipes.timit.features import FeatureConfig, frame_segments, moments, normalize
from recipes.timit.features import prepare_features as compute_or_load
from recipes.timit.generate import GeneratorParams, ensure_builtin_corpus
from recipes.timit.phones import phone_set

log = logging.getLogger("recipes.timit")


@dataclass
class PreparedSplit:
    """Features and labels of one split, in memory; phones and segments use the 61-set."""

    utt_ids: list[str]
    speakers: list[str]
    feats: list[torch.Tensor]  # [T, F] float32, normalised
    phones: list[list[str]]  # 61-set, q removed (CTC targets before mapping)
    segments: list[list[tuple[int, int, str]]]  # frame segments, 61-set (q kept), for plots

    def __len__(self) -> int:
        return len(self.utt_ids)

    @property
    def num_frames(self) -> list[int]:
        """Frames per utterance."""
        return [f.shape[0] for f in self.feats]


@dataclass
class PreparedCorpus:
    """All splits plus what the model needs to know about them."""

    splits: dict[str, PreparedSplit]
    feature_dim: int
    train_phones: list[str]  # the training phone set (data.train_phones), sorted
    summary: str
    root: Path | None = None
    stats: tuple[torch.Tensor, torch.Tensor] | None = None  # training mean, std (global norm.)


def _get(cfg: Mapping, key: str, default: object = None) -> object:
    return cfg[key] if key in cfg and cfg[key] is not None else default


def prepare_corpus(data: Mapping, features: Mapping, num_workers: int = 1) -> PreparedCorpus:
    """Read (generating the built-in corpus first when ``data.name == "builtin"``), validate,
    featurise (cached) and normalise the corpus described by the ``data``/``features`` configs."""
    name = _get(data, "name", "timit")
    if _get(data, "root") in (None, "???"):
        raise ValueError("data.root is not set: use data=timit data.root=/path/to/TIMIT")
    root = Path(str(data["root"])).expanduser()
    if name == "builtin":
        gen = dict(_get(data, "generator", {}) or {})
        known = GeneratorParams.__dataclass_fields__
        ensure_builtin_corpus(
            root, num_workers=num_workers, **{k: int(v) for k, v in gen.items() if k in known}
        )
    elif name != "timit":
        raise ValueError(f"unknown data.name {name!r} (builtin | timit)")
    splits = read_timit(root, skip_bad=bool(_get(data, "skip_bad", False)))
    table = summary(splits)
    log.info("corpus %s:\n%s", root, table)

    cfg = FeatureConfig.from_mapping(features)
    cache_dir = Path(str(_get(data, "cache_dir", root.parent / "features"))).expanduser()
    raw = compute_or_load(root, splits, cfg, cache_dir, num_workers)
    stats = moments(raw["train"]["feats"]) if cfg.normalization == "global" else None

    prepared = {}
    for split, utts in splits.items():
        feats = raw[split]["feats"]
        speakers = [u.speaker for u in utts]
        prepared[split] = PreparedSplit(
            utt_ids=[u.utt_id for u in utts],
            speakers=speakers,
            feats=normalize(feats, speakers, cfg.normalization, stats),
            phones=[[p for p in u.phones if p != "q"] for u in utts],
            segments=[
                frame_segments(u.segments, f.shape[0], cfg)
                for u, f in zip(utts, feats, strict=True)
            ],
        )
    return PreparedCorpus(
        splits=prepared,
        feature_dim=cfg.dim,
        train_phones=phone_set(int(_get(data, "train_phones", 48))),
        summary=table,
        root=root,
        stats=stats,
    )
