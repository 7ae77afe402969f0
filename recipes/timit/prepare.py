"""The single data entry point of the recipe: corpus -> validated utterances -> cached features.

Reads the corpus (generating the built-in one first), validates it, computes or loads the cached
features and normalises them: a :class:`~recipes.toolkit.data.prepared.PreparedCorpus` for the
toolkit's data module.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from recipes.timit.builtin.generate import GeneratorParams, ensure_builtin_corpus
from recipes.timit.corpus import CorpusError, Utterance, read_timit_report, summary
from recipes.timit.phones import phone_set
from recipes.toolkit.data.child_process import in_child_process
from recipes.toolkit.data.feature_config import SAMPLE_RATE, FeatureConfig
from recipes.toolkit.data.feature_store import moments
from recipes.toolkit.data.features import normalize
from recipes.toolkit.data.features import prepare_features as compute_or_load
from recipes.toolkit.data.packed import PackedLists, PackedStrings
from recipes.toolkit.data.prepared import PreparedCorpus, PreparedSplit
from recipes.toolkit.data.segments import frame_segments

log = logging.getLogger(__name__)


def _get(cfg: Mapping, key: str, default: object = None) -> object:
    return cfg[key] if key in cfg and cfg[key] is not None else default


def training_list_fingerprint(utts: Sequence) -> str:
    """A short hash of the training utterance ids (the same after the corpus is copied)."""
    return hashlib.sha256("\n".join(sorted(u.utt_id for u in utts)).encode()).hexdigest()[:16]


def drop_too_short(
    splits: dict[str, list[Utterance]], cfg: FeatureConfig, skip_bad: bool
) -> list[tuple[str, str]]:
    """Refuse (or with ``skip_bad`` remove from ``splits``, returning them with the reason)
    utterances shorter than one analysis window: they have no feature frame."""
    problems = []
    for name, utts in splits.items():
        short = [u for u in utts if u.num_samples < cfg.length_samples]
        for u in short:
            problems.append(
                (str(u.wav), f"{u.num_samples} samples ({u.num_samples / SAMPLE_RATE:.3f} s), "
                 f"shorter than one {cfg.frame_length_ms:g} ms analysis window "
                 f"({cfg.length_samples} samples)")
            )  # fmt: skip
        if short and skip_bad:
            splits[name] = [u for u in utts if u.num_samples >= cfg.length_samples]
    if problems and not skip_bad:
        raise CorpusError(
            f"{len(problems)} utterance(s) too short for a feature frame (data.skip_bad=true "
            "leaves them out):\n  " + "\n  ".join(f"{path}: {why}" for path, why in problems),
            [f"{path}: {why}" for path, why in problems],
        )
    if problems:
        log.warning("left out %d utterance(s) too short for a feature frame", len(problems))
    return problems


def prepare_corpus(
    data: Mapping,
    features: Mapping,
    num_workers: int = 1,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> PreparedCorpus:
    """Read (generating the built-in corpus first when ``data.name == "builtin"``), validate,
    featurise (cached) and normalise the corpus described by the ``data``/``features`` configs.

    Global normalisation uses ``stats`` (mean, std) when given (a checkpoint's own: evaluation
    must not depend on the training split at hand), else the training split's. The work runs in
    a child process (:func:`~recipes.toolkit.data.child_process.in_child_process`): what the
    reader leaves in Python's heap stays there, and this process gets the packed result."""
    return in_child_process(_prepare_corpus, data, features, num_workers, stats)


def _prepare_corpus(
    data: Mapping,
    features: Mapping,
    num_workers: int,
    stats: tuple[torch.Tensor, torch.Tensor] | None,
) -> PreparedCorpus:
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
    report = read_timit_report(
        root, skip_bad=bool(_get(data, "skip_bad", False)), expect_standard_sizes=name == "timit"
    )
    splits = report.splits
    table = summary(splits)
    log.info("corpus %s:\n%s", root, table)

    cfg = FeatureConfig.from_mapping(features)
    skipped = [(str(item.path), item.reason) for item in report.skipped]
    skipped += drop_too_short(splits, cfg, bool(_get(data, "skip_bad", False)))
    cache_dir = Path(str(_get(data, "cache_dir", root.parent / "features"))).expanduser()
    raw = compute_or_load(root, splits, cfg, cache_dir, num_workers)
    if cfg.normalization != "global":
        stats = None
    elif stats is None:
        stats = moments(raw["train"])

    prepared = {}
    for split, utts in splits.items():
        feats = raw[split]
        speakers = [u.speaker for u in utts]
        prepared[split] = PreparedSplit(
            utt_ids=PackedStrings.of(u.utt_id for u in utts),
            speakers=PackedStrings.of(speakers),
            feats=normalize(feats, speakers, cfg.normalization, stats),
            phones=PackedLists.of_symbols([[p for p in u.phones if p != "q"] for u in utts]),
            segments=PackedLists.of_segments(
                [
                    frame_segments(u.segments, frames, cfg.length_samples, cfg.shift_samples)
                    for u, frames in zip(utts, feats.lengths, strict=True)
                ]
            ),  # fmt: skip
            times=PackedLists.of_segments(
                [[(a / SAMPLE_RATE, b / SAMPLE_RATE, p) for a, b, p in u.segments] for u in utts]
            ),
            wavs=PackedStrings.of(str(u.wav) for u in utts),
        )
    return PreparedCorpus(
        splits=prepared,
        feature_dim=cfg.dim,
        train_phones=phone_set(int(_get(data, "train_phones", 48))),
        summary=table,
        root=root,
        stats=stats,
        identity={
            "name": str(name),
            "root": str(root.resolve()),
            "train_list": training_list_fingerprint(splits["train"]),
        },
        skipped=skipped,
        features=cfg,
    )
