"""Length-bucketed batches under a frame budget, shuffled per epoch and sharded across ranks.

>>> s = FrameBudgetBatchSampler([10, 12, 30, 31, 5], max_frames=40, shuffle=False)
>>> sorted(sorted(b) for b in s)
[[0, 1, 4], [2], [3]]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class FrameBudgetBatchSampler(Sampler[list[int]]):
    """Batches of indices with ``len(batch) * max(length in batch) <= max_frames``.

    Utterances are sorted by length (with a per-epoch random jitter of +-10% so batches change
    between epochs), packed greedily, and the batch order is shuffled from ``seed + epoch``: every
    rank computes the same global list. Rank ``r`` takes batches ``r, r + R, ...``; ranks left one
    short repeat their own first batch, so all ranks get the same number of batches and disjoint
    utterances (``drop_last`` drops the surplus instead). An utterance longer than the budget
    forms a batch of its own.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
    ) -> None:
        if max_frames <= 0:
            raise ValueError("max_frames must be positive")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.max_frames = max_frames
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.epoch = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields."""
        self.epoch = epoch

    @property
    def sampler(self) -> FrameBudgetBatchSampler:
        """Itself. At the start of every training epoch Lightning calls ``set_epoch`` on a
        loader's ``sampler`` and on its ``batch_sampler.sampler``, not on the batch sampler: this
        is how a loader built on this batch sampler gets a new order every epoch."""
        return self

    def global_batches(self) -> list[list[int]]:
        """Every batch of this epoch, for all ranks together (before sharding)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.lengths)
        key = self.lengths * (rng.uniform(0.9, 1.1, n) if self.shuffle else np.ones(n))
        order = np.lexsort((rng.permutation(n) if self.shuffle else np.arange(n), key))
        batches: list[list[int]] = []
        cur: list[int] = []
        longest = 0
        for i in order.tolist():
            longest_if = max(longest, int(self.lengths[i]))
            if cur and (len(cur) + 1) * longest_if > self.max_frames:
                batches.append(cur)
                cur, longest_if = [], int(self.lengths[i])
            cur.append(i)
            longest = longest_if
        if cur:
            batches.append(cur)
        # give every rank at least one batch of its own when there are enough utterances
        while len(batches) < self.num_replicas and max(map(len, batches), default=0) > 1:
            big = max(range(len(batches)), key=lambda b: len(batches[b]))
            half = len(batches[big]) // 2
            batches.append(batches[big][half:])
            batches[big] = batches[big][:half]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _rank_batches(self) -> list[list[int]]:
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        batches = self.global_batches()
        r = self.num_replicas
        if self.drop_last:
            batches = batches[: len(batches) // r * r]
        mine = batches[self.rank :: r]
        per_rank = -(-len(batches) // r)
        if not mine and batches:  # fewer utterances than ranks: borrow (duplicates)
            mine = [batches[self.rank % len(batches)]]
        while len(mine) < per_rank:
            mine.append(mine[0])
        self._cache = (self.epoch, mine)
        return mine

    def __iter__(self) -> Iterator[list[int]]:
        yield from (list(b) for b in self._rank_batches())

    def __len__(self) -> int:
        return len(self._rank_batches())
