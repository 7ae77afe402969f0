"""Kaldi-compatible log-mel filterbank features, computed once and cached on disk.

Raw features (Kaldi's filterbank, :mod:`recipes.toolkit.data.fbank`, + optional deltas) of every
split are streamed, as the worker processes compute them, into ``<cache_dir>/<key>/<split>.f32``:
one contiguous little-endian float32 ``[frames, dim]`` array, opened memory-mapped (numpy's
``memmap``), so that every process on a node shares the page cache and none holds a copy. Its
index ``<split>.json`` records the utterance ids, their lengths, the byte size and the sha256;
``key`` hashes the format version, the corpus root, a fingerprint of its files (names, sizes,
mtimes) and the feature configuration. A truncated or corrupted array is named in a WARNING and
recomputed; an array without an index (a killed writer) is recomputed. A cache of the first
format (one ``torch.save`` blob per split) is converted, with a log line. Every write into a
cache folder holds its ``.lock``, so the temporary files found there when the lock is taken were
left by a killed writer: they are removed (and logged). Normalisation (global from training
statistics, per speaker, or none) is applied as each utterance is read.

>>> cfg = FeatureConfig(num_mel_bins=40, deltas=2)
>>> cfg.dim
120
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import multiprocessing
import multiprocessing.pool
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
import torch
import torchaudio

from recipes.toolkit.data.feature_config import FeatureConfig, compute_fbank
from recipes.toolkit.data.feature_store import DTYPE, FeatureStore, moments
from recipes.toolkit.run.atomic import (
    atomic_write,
    atomic_write_text,
    file_sha256,
    temporary_files,
)

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # 1: a torch.save blob per split; 2: a memory-mapped array and its index


class AudioItem(Protocol):
    """What features need of an utterance: its id, split, audio file and the files it comes from."""

    utt_id: str
    split: str
    wav: Path

    @property
    def source_files(self) -> Sequence[Path]:
        """Files whose change invalidates the cached features (audio, transcription)."""
        ...


def load_waveform(path: Path) -> torch.Tensor:
    """``[1, N]`` float32 waveform at int16 scale."""
    data, _ = sf.read(str(path), dtype="int16", always_2d=True)
    return torch.from_numpy(data[:, 0].astype(np.float32)).unsqueeze(0)


def _worker_init() -> None:
    torch.set_num_threads(1)


def _pool(num_workers: int) -> multiprocessing.pool.Pool:
    """Worker pool: fork where available (no re-import of ``__main__``), else spawn."""
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return ctx.Pool(num_workers, initializer=_worker_init)


def _featurize(args: tuple[str, FeatureConfig]) -> np.ndarray:
    # A numpy array, not a tensor: a tensor sent between processes goes through torch's
    # shared-memory reduction (a shared file per tensor), which costs more than the features.
    path, cfg = args
    return compute_fbank(load_waveform(Path(path)), cfg).numpy()


def fingerprint(utts: Sequence[AudioItem]) -> str:
    """Hash of the utterances' audio and transcription files (path, size, mtime)."""
    h = hashlib.sha256()
    for u in utts:
        for p in u.source_files:
            st = p.stat()
            h.update(f"{u.split}|{u.utt_id}|{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_key(
    root: Path,
    splits: Mapping[str, Sequence[AudioItem]],
    cfg: FeatureConfig,
    version: int = CACHE_VERSION,
) -> str:
    """Cache folder name for (format version, corpus identity, file fingerprint, features)."""
    utts = [u for name in sorted(splits) for u in splits[name]]
    blob = json.dumps(
        {
            "version": version,
            "root": str(Path(root).resolve()),
            "files": fingerprint(utts),
            "features": cfg.raw_key(),
            "torchaudio": torchaudio.__version__,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _compute_split(
    utts: Sequence[AudioItem],
    cfg: FeatureConfig,
    name: str,
    pool: multiprocessing.pool.Pool | None,
    num_workers: int,
) -> Iterator[torch.Tensor]:
    """The features of ``utts`` in order, computed by ``pool`` (None: here), with progress."""
    jobs = [(str(u.wav), cfg) for u in utts]
    t0, step = time.perf_counter(), max(1, len(jobs) // 10)
    chunk = max(1, min(64, len(jobs) // (8 * num_workers)))  # few round trips, balanced ends
    it = pool.imap(_featurize, jobs, chunksize=chunk) if pool else map(_featurize, jobs)
    for i, f in enumerate(it, 1):
        yield torch.from_numpy(f)
        if i % step == 0 or i == len(jobs):
            log.info("features %s: %d/%d utterances (%.0f%%, %.1f s)", name, i, len(jobs),
                     100 * i / len(jobs), time.perf_counter() - t0)  # fmt: skip


@contextlib.contextmanager
def _workers(num_workers: int) -> Iterator[multiprocessing.pool.Pool | None]:
    """A pool of ``num_workers`` feature processes for every split (None: compute here, on
    one thread: per-utterance operations are small, more threads only contend)."""
    threads = torch.get_num_threads()
    pool = _pool(num_workers) if num_workers > 1 else None
    if pool is None:
        torch.set_num_threads(1)
    try:
        yield pool
    finally:
        torch.set_num_threads(threads)
        if pool is not None:
            pool.terminate()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def split_files(folder: Path, name: str) -> tuple[Path, Path]:
    """A split's feature array (``<name>.f32``) and its index (``<name>.json``) in ``folder``."""
    return folder / f"{name}.f32", folder / f"{name}.json"


def prepare_features(
    root: Path,
    splits: Mapping[str, Sequence[AudioItem]],
    cfg: FeatureConfig,
    cache_dir: Path,
    num_workers: int = 1,
) -> dict[str, FeatureStore]:
    """Raw (unnormalised) features per split, computed once, cached, opened memory-mapped."""
    folder = Path(cache_dir) / cache_key(root, splits, cfg)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    with _file_lock(folder / ".lock"):
        # Every write into the folder happens under this lock: a temporary file found now was
        # left by a writer that died (the kernel released its lock).
        for tmp in temporary_files(folder):
            log.warning("removing %s, a temporary file left by an interrupted run", tmp)
            tmp.unlink(missing_ok=True)
        with contextlib.ExitStack() as stack:
            workers: list = []  # the pool, started for the first split to compute
            first_format: Path | None = None  # the first format's folder (a file-tree walk)
            for name, utts in splits.items():
                ids = [u.utt_id for u in utts]
                store = load_split(folder, name, ids, cfg.dim)
                if store is None:
                    if first_format is None:
                        first_format = Path(cache_dir) / cache_key(root, splits, cfg, version=1)
                    store = _convert_version1(first_format / f"{name}.pt", cfg, folder, name, ids)
                if store is not None:
                    log.info("reusing cached features %s (%d utterances, memory-mapped)",
                             store.path, len(ids))  # fmt: skip
                    out[name] = store
                    continue
                data_path, _ = split_files(folder, name)
                log.info("computing features for %s (%d utterances) -> %s", name, len(ids),
                         data_path)  # fmt: skip
                if not workers:
                    workers.append(stack.enter_context(_workers(num_workers)))
                feats = _compute_split(utts, cfg, name, workers[0], num_workers)
                write_split(folder, name, ids, cfg.dim, feats)
                out[name] = load_split(folder, name, ids, cfg.dim, verify=False)
        config, config_file = json.dumps(cfg.raw_key(), indent=1) + "\n", folder / "config.json"
        if not config_file.is_file() or config_file.read_bytes() != config.encode():
            atomic_write_text(config_file, config)
    return out


def write_split(
    folder: Path, name: str, utt_ids: Sequence[str], dim: int, feats: Iterable[torch.Tensor]
) -> None:
    """Stream ``feats`` into the split's array file, then write its index (utterance ids,
    lengths, byte size, sha256), each atomically: an array without an index is not trusted."""
    data_path, index_path = split_files(folder, name)
    index_path.unlink(missing_ok=True)
    lengths: list[int] = []
    digest = hashlib.sha256()

    def write(handle) -> None:
        for f in feats:
            if f.dim() != 2 or f.shape[1] != dim:
                raise ValueError(f"features of {name} must be [frames, {dim}], got {list(f.shape)}")
            chunk = np.ascontiguousarray(f.numpy(), dtype=DTYPE).tobytes()
            digest.update(chunk)
            handle.write(chunk)
            lengths.append(f.shape[0])

    atomic_write(data_path, write)
    if len(lengths) != len(utt_ids):
        raise ValueError(f"{len(lengths)} feature arrays for {len(utt_ids)} utterances of {name}")
    index = {
        "version": CACHE_VERSION,
        "file": data_path.name,
        "dtype": "float32 little-endian, row-major [frames, dim]",
        "dim": dim,
        "bytes": data_path.stat().st_size,
        "sha256": digest.hexdigest(),
        "utt_ids": list(utt_ids),
        "lengths": lengths,
    }
    atomic_write_text(index_path, json.dumps(index) + "\n")


def load_split(
    folder: Path, name: str, utt_ids: Sequence[str], dim: int, verify: bool = True
) -> FeatureStore | None:
    """The split's cached features, memory-mapped; None when there are none, when they are for
    other utterances, or (with a WARNING naming the file and the problem) when they are damaged.
    ``verify`` checks the array's sha256 against its index (one read of the file)."""
    data_path, index_path = split_files(folder, name)
    if not index_path.is_file():
        if data_path.is_file():
            log.info("%s has no index (its writer was interrupted); recomputing it", data_path)
        return None
    problem = None
    try:
        index = json.loads(index_path.read_text())
        lengths, recorded_ids = [int(n) for n in index["lengths"]], list(index["utt_ids"])
        expected_bytes, expected_sha = int(index["bytes"]), str(index["sha256"])
        recorded_dim = int(index["dim"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        log.warning("cached features %s are damaged: its index %s is unreadable (%s); "
                    "recomputing them", data_path, index_path.name, err)  # fmt: skip
        return None
    if recorded_ids != list(utt_ids) or recorded_dim != dim:
        log.info("cached features %s are for other utterances or settings; recomputing", data_path)
        return None
    size = data_path.stat().st_size if data_path.is_file() else None
    if size is None:
        problem = "the file is missing"
    elif size != expected_bytes or size != sum(lengths) * dim * DTYPE.itemsize:
        problem = f"{size} bytes where {index_path.name} records {expected_bytes} (truncated?)"
    elif verify and file_sha256(data_path) != expected_sha:
        problem = f"its sha256 differs from the one {index_path.name} records (corrupted)"
    if problem is not None:
        log.warning("cached features %s are damaged: %s; recomputing them", data_path, problem)
        return None
    return FeatureStore.from_file(data_path, dim, lengths)


def _convert_version1(
    old: Path, cfg: FeatureConfig, folder: Path, name: str, utt_ids: Sequence[str]
) -> FeatureStore | None:
    """Rewrite the split ``old`` cached in the first format (one ``torch.save`` blob per split,
    loaded whole into memory) as a memory-mapped array in ``folder``; None when there is none."""
    if not old.is_file():
        return None
    try:
        blob = torch.load(old, weights_only=True)
        data, lengths = blob["data"], list(blob["lengths"])
        usable = blob["utt_ids"] == list(utt_ids) and data.shape == (sum(lengths), cfg.dim)
    except Exception as err:  # torn or foreign: recompute
        log.warning("old-format cached features %s cannot be loaded (%s: %s); recomputing them",
                    old, type(err).__name__, err)  # fmt: skip
        return None
    if not usable:
        return None
    write_split(folder, name, utt_ids, cfg.dim, torch.split(data, lengths))
    for path in (old, old.with_name(old.name + ".sha256.json")):
        path.unlink(missing_ok=True)
    log.info("converted old-format cached features %s to the memory-mapped %s (removed the old "
             "file)", old, split_files(folder, name)[0])  # fmt: skip
    return load_split(folder, name, utt_ids, cfg.dim, verify=False)


def normalize(
    feats: FeatureStore,
    speakers: Sequence[str],
    mode: str,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> FeatureStore:
    """``feats`` with ``global`` (``stats`` from training data), ``speaker`` or ``none``
    normalisation, applied as each utterance is read."""
    if mode == "none":
        return feats
    if mode == "global":
        if stats is None:
            raise ValueError("global normalisation needs training statistics")
        return feats.normalized(*stats)
    if mode == "speaker":
        by_spk: dict[str, list[int]] = {}
        for i, s in enumerate(speakers):
            by_spk.setdefault(s, []).append(i)
        groups = [0] * len(speakers)
        means, stds = [], []
        for g, idx in enumerate(by_spk.values()):
            mean, std = moments(feats.subset(idx))
            means.append(mean)
            stds.append(std)
            for i in idx:
                groups[i] = g
        if not means:
            return feats
        return feats.normalized(torch.stack(means), torch.stack(stds), groups)
    raise ValueError(f"unknown normalization {mode!r}")
