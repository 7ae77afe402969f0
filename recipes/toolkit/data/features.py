"""Kaldi-compatible log-mel filterbank features, computed once and cached on disk.

Raw features (``torchaudio.compliance.kaldi.fbank`` + optional deltas) of every split are written
atomically to ``<cache_dir>/<key>/<split>.pt`` where ``key`` hashes the corpus root, a fingerprint
of its files (names, sizes, mtimes) and the feature configuration. Beside each split a sidecar
``<split>.pt.sha256.json`` records the blob's byte size and sha256: a cache that is truncated or
corrupted is named in a WARNING and recomputed. A cache written before sidecars existed is trusted
when it loads with the expected structure, and then gets its sidecar. Every write into a cache
folder holds its ``.lock``, so the temporary files found there when the lock is taken were left by
a killed writer: they are removed (and logged). Normalisation (global from training statistics,
per speaker, or none) is applied at load time.

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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
import torch
import torchaudio

from recipes.toolkit.run.atomic import atomic_torch_save, atomic_write_text, temporary_files

log = logging.getLogger(__name__)
CACHE_VERSION = 1
SAMPLE_RATE = 16000  # Hz: what the features are computed at (a corpus checks, transcribe resamples)


class AudioItem(Protocol):
    """What features need of an utterance: its id, split, audio file and the files it comes from."""

    utt_id: str
    split: str
    wav: Path

    @property
    def source_files(self) -> Sequence[Path]:
        """Files whose change invalidates the cached features (audio, transcription)."""
        ...


@dataclass(frozen=True)
class FeatureConfig:
    """Filterbank settings (the ``features`` config group)."""

    num_mel_bins: int = 40
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0
    deltas: int = 0  # 0: statics, 1: + deltas, 2: + delta-deltas
    normalization: str = "global"  # global | speaker | none

    def __post_init__(self) -> None:
        if self.deltas not in (0, 1, 2):
            raise ValueError(f"deltas must be 0, 1 or 2, got {self.deltas}")
        if self.normalization not in ("global", "speaker", "none"):
            raise ValueError(f"normalization must be global|speaker|none: {self.normalization}")

    @staticmethod
    def from_mapping(cfg: Mapping) -> FeatureConfig:
        """Build from a (plain or OmegaConf) mapping, ignoring unknown keys such as ``name``."""
        known = FeatureConfig.__dataclass_fields__
        return FeatureConfig(**{k: cfg[k] for k in cfg if k in known})

    @property
    def dim(self) -> int:
        """Feature vector size."""
        return self.num_mel_bins * (1 + self.deltas)

    @property
    def shift_samples(self) -> int:
        return int(SAMPLE_RATE * self.frame_shift_ms / 1000)

    @property
    def length_samples(self) -> int:
        return int(SAMPLE_RATE * self.frame_length_ms / 1000)

    def raw_key(self) -> dict:
        """Settings that change the cached (unnormalised) features."""
        d = asdict(self)
        d.pop("normalization")
        return d


def compute_fbank(waveform: torch.Tensor, cfg: FeatureConfig) -> torch.Tensor:
    """``[T, dim]`` float32 features of a ``[1, N]`` waveform (int16 scale, as Kaldi)."""
    feats = torchaudio.compliance.kaldi.fbank(
        waveform,
        num_mel_bins=cfg.num_mel_bins,
        frame_length=cfg.frame_length_ms,
        frame_shift=cfg.frame_shift_ms,
        dither=cfg.dither,
        sample_frequency=SAMPLE_RATE,
        energy_floor=0.0,
    )
    if cfg.deltas:
        d1 = torchaudio.functional.compute_deltas(feats.T.unsqueeze(0)).squeeze(0)
        parts = [feats, d1.T]
        if cfg.deltas == 2:
            parts.append(torchaudio.functional.compute_deltas(d1.unsqueeze(0)).squeeze(0).T)
        feats = torch.cat(parts, dim=1)
    return feats.contiguous()


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


def _featurize(args: tuple[str, FeatureConfig]) -> torch.Tensor:
    path, cfg = args
    return compute_fbank(load_waveform(Path(path)), cfg)


def fingerprint(utts: Sequence[AudioItem]) -> str:
    """Hash of the utterances' audio and transcription files (path, size, mtime)."""
    h = hashlib.sha256()
    for u in utts:
        for p in u.source_files:
            st = p.stat()
            h.update(f"{u.split}|{u.utt_id}|{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_key(root: Path, splits: Mapping[str, Sequence[AudioItem]], cfg: FeatureConfig) -> str:
    """Cache folder name for (corpus identity, file fingerprint, feature config)."""
    utts = [u for name in sorted(splits) for u in splits[name]]
    blob = json.dumps(
        {
            "version": CACHE_VERSION,
            "root": str(Path(root).resolve()),
            "files": fingerprint(utts),
            "features": cfg.raw_key(),
            "torchaudio": torchaudio.__version__,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _compute_split(
    utts: Sequence[AudioItem], cfg: FeatureConfig, name: str, num_workers: int
) -> list[torch.Tensor]:
    jobs = [(str(u.wav), cfg) for u in utts]
    feats: list[torch.Tensor] = []
    t0, step = time.perf_counter(), max(1, len(jobs) // 10)
    pool = _pool(num_workers) if num_workers > 1 else None
    threads = torch.get_num_threads()
    if pool is None:
        torch.set_num_threads(1)  # per-utterance ops are tiny: threads only contend
    try:
        it = pool.imap(_featurize, jobs, chunksize=8) if pool else map(_featurize, jobs)
        for i, f in enumerate(it, 1):
            feats.append(f)
            if i % step == 0 or i == len(jobs):
                log.info("features %s: %d/%d utterances (%.0f%%, %.1f s)", name, i, len(jobs),
                         100 * i / len(jobs), time.perf_counter() - t0)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
        if pool:
            pool.terminate()
    return feats


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare_features(
    root: Path,
    splits: Mapping[str, Sequence[AudioItem]],
    cfg: FeatureConfig,
    cache_dir: Path,
    num_workers: int = 1,
) -> dict[str, dict]:
    """Raw features per split, computed once and cached. Each value holds ``utt_ids``,
    ``feats`` (list of ``[T, dim]`` tensors), ``lengths``."""
    folder = Path(cache_dir) / cache_key(root, splits, cfg)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    with _file_lock(folder / ".lock"):
        # Every write into the folder happens under this lock: a temporary file found now was
        # left by a writer that died (the kernel released its lock).
        for tmp in temporary_files(folder):
            log.warning("removing %s, a temporary file left by an interrupted run", tmp)
            tmp.unlink(missing_ok=True)
        for name, utts in splits.items():
            path = folder / f"{name}.pt"
            ids = [u.utt_id for u in utts]
            blob = load_cached(path)
            if blob is not None and blob["utt_ids"] == ids and blob["dim"] == cfg.dim:
                log.info("reusing cached features %s (%d utterances)", path, len(ids))
                out[name] = _unpack(blob)
                continue
            log.info("computing features for %s (%d utterances) -> %s", name, len(ids), path)
            feats = _compute_split(utts, cfg, name, num_workers)
            blob = {
                "utt_ids": ids,
                "dim": cfg.dim,
                "lengths": [f.shape[0] for f in feats],
                "data": torch.cat(feats) if feats else torch.zeros(0, cfg.dim),
            }
            save_cached(blob, path)
            out[name] = _unpack(blob)
        config, config_file = json.dumps(cfg.raw_key(), indent=1) + "\n", folder / "config.json"
        if not config_file.is_file() or config_file.read_bytes() != config.encode():
            atomic_write_text(config_file, config)
    return out


def checksum_path(path: Path) -> Path:
    """The sidecar recording the byte size and sha256 of the cache blob ``path``."""
    return path.with_name(path.name + ".sha256.json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _structure_problem(blob: object) -> str | None:
    """What is wrong with a loaded cache blob, or None when it has the expected structure."""
    keys = {"utt_ids", "dim", "lengths", "data"}
    if not isinstance(blob, dict) or not keys <= blob.keys():
        return f"not a feature cache (expected a dict with {sorted(keys)})"
    data, lengths = blob["data"], blob["lengths"]
    if not isinstance(data, torch.Tensor) or data.dim() != 2 or data.shape[1] != blob["dim"]:
        return f"data is not a [frames, {blob['dim']}] tensor"
    if len(lengths) != len(blob["utt_ids"]) or sum(lengths) != data.shape[0]:
        return "utterance lengths do not match the data"
    return None


def load_cached(path: Path) -> dict | None:
    """The cache blob at ``path`` once verified; None when there is none or (with a WARNING naming
    the file and the problem) when it is damaged. A blob without a sidecar (written before they
    existed) is verified by loading it, then gets its sidecar."""
    if not path.is_file():
        return None
    sidecar = checksum_path(path)
    recorded = None
    problem = None
    if sidecar.is_file():
        try:
            recorded = json.loads(sidecar.read_text())
            expected_size, expected_sha = int(recorded["bytes"]), str(recorded["sha256"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            problem = f"its checksum file {sidecar.name} is unreadable ({err})"
        else:
            size = path.stat().st_size
            if size != expected_size:
                problem = f"{size} bytes where {sidecar.name} records {expected_size} (truncated?)"
            elif _sha256(path) != expected_sha:
                problem = f"its sha256 differs from the one {sidecar.name} records (corrupted)"
    blob = None
    if problem is None:
        try:
            blob = torch.load(path, weights_only=True)
        except Exception as err:  # torn zip, bad pickle, ...: all mean "recompute"
            problem = f"it cannot be loaded ({type(err).__name__}: {err})"
        else:
            problem = _structure_problem(blob)
    if problem is not None:
        log.warning("cached features %s are damaged: %s; recomputing them", path, problem)
        return None
    if recorded is None:
        _write_checksum(path)
        log.info("cached features %s load correctly; recorded their checksum", path)
    return blob


def save_cached(blob: dict, path: Path) -> None:
    """Write ``blob`` to ``path`` and then its sidecar, both atomically (fsync, rename)."""
    checksum_path(path).unlink(missing_ok=True)  # a kill before the new sidecar: verify by loading
    atomic_torch_save(blob, path)
    _write_checksum(path)


def _write_checksum(path: Path) -> None:
    record = {"file": path.name, "bytes": path.stat().st_size, "sha256": _sha256(path)}
    atomic_write_text(checksum_path(path), json.dumps(record, indent=1) + "\n")


def _unpack(blob: dict) -> dict:
    feats = list(torch.split(blob["data"], blob["lengths"])) if blob["lengths"] else []
    return {"utt_ids": blob["utt_ids"], "lengths": blob["lengths"], "feats": feats}


def moments(feats: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over all frames (float64 accumulation)."""
    x = torch.cat(list(feats)).double()
    return x.mean(0), x.std(0).clamp_min(1e-5)


def normalize(
    feats: Sequence[torch.Tensor],
    speakers: Sequence[str],
    mode: str,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Apply ``global`` (``stats`` from training data), ``speaker`` or ``none`` normalisation."""
    if mode == "none":
        return [f.float() for f in feats]
    if mode == "global":
        if stats is None:
            raise ValueError("global normalisation needs training statistics")
        mean, std = stats
        return [((f.double() - mean) / std).float() for f in feats]
    if mode == "speaker":
        by_spk: dict[str, list[int]] = {}
        for i, s in enumerate(speakers):
            by_spk.setdefault(s, []).append(i)
        out: list[torch.Tensor] = list(feats)
        for idx in by_spk.values():
            mean, std = moments([feats[i] for i in idx])
            for i in idx:
                out[i] = ((feats[i].double() - mean) / std).float()
        return out
    raise ValueError(f"unknown normalization {mode!r}")
