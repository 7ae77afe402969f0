"""Feature preparation speed on the built-in corpus, and cache loading vs. a training epoch.

Prints (1) filterbank preparation speed as a multiple of real time (audio seconds per wall
second), (2) the time to load the cached splits, (3) a rough epoch estimate: forward + backward of
a small 2-layer bidirectional ``torch.nn.GRU`` (hidden 256) over every training batch, and the
ratio of (2) to (3).

    python scripts/bench_features.py --num-workers 2
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from recipes.timit.builtin.generate import ensure_builtin_corpus
from recipes.timit.corpus import SAMPLE_RATE, read_timit
from recipes.toolkit.data.features import FeatureConfig, prepare_features
from recipes.toolkit.data.sampler import FrameBudgetBatchSampler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path("data/builtin_timit"))
    ap.add_argument("--num-workers", type=int, default=1, help="feature preparation processes")
    ap.add_argument("--num-mel-bins", type=int, default=40)
    ap.add_argument("--max-frames", type=int, default=6000, help="batch frame budget")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--max-batches", type=int, default=0, help="time only this many (0: all)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    root = ensure_builtin_corpus(args.root, num_workers=args.num_workers)
    print(f"corpus ready at {root} in {time.perf_counter() - t0:.1f} s")
    splits = read_timit(root)
    audio_s = sum(u.num_samples for v in splits.values() for u in v) / SAMPLE_RATE
    cfg = FeatureConfig(num_mel_bins=args.num_mel_bins)

    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        prepare_features(root, splits, cfg, Path(cache), args.num_workers)
        prep = time.perf_counter() - t0
        t0 = time.perf_counter()
        raw = prepare_features(root, splits, cfg, Path(cache), args.num_workers)
        load = time.perf_counter() - t0
    print(
        f"features: {audio_s / 3600:.3f} h of audio in {prep:.2f} s with {args.num_workers} "
        f"worker(s) = {audio_s / prep:.0f}x real time"
    )
    print(f"loading the cached splits: {load:.3f} s")

    feats = raw["train"]["feats"]
    sampler = FrameBudgetBatchSampler([f.shape[0] for f in feats], args.max_frames, seed=0)
    batches = list(sampler)
    timed = batches[: args.max_batches] if args.max_batches else batches
    gru = torch.nn.GRU(cfg.dim, args.hidden, num_layers=2, bidirectional=True, batch_first=True)
    head = torch.nn.Linear(2 * args.hidden, 49)
    t0 = time.perf_counter()
    for batch in timed:
        x = torch.nn.utils.rnn.pad_sequence([feats[i] for i in batch], batch_first=True)
        out, _ = gru(x)
        head(out).logsumexp(-1).mean().backward()
    epoch = (time.perf_counter() - t0) * len(batches) / max(1, len(timed))
    print(
        f"epoch estimate: {len(batches)} batches (max_frames={args.max_frames}), 2x bi-GRU "
        f"{args.hidden}: {epoch:.2f} s; cache load / epoch = {load / epoch:.3f}"
    )


if __name__ == "__main__":
    main()
