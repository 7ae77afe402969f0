"""Utterance features kept in one contiguous ``[frames, dim]`` float32 array, normalised on access.

The array is usually a read-only memory map of a split's cache file: every process that opens it
(DDP ranks, DataLoader workers) shares the operating system's page cache, so a process's resident
memory does not grow with the corpus. An item is copied out of the map and normalised only when it
is asked for; a pickled store (a DataLoader worker started by ``spawn``) carries the file's path,
not its data.

>>> store = FeatureStore.from_tensors([torch.ones(2, 3), torch.zeros(4, 3)])
>>> len(store), store.lengths, store[1].shape
(2, [2, 4], torch.Size([4, 3]))
>>> mean, std = moments(store)
>>> normed = store.normalized(mean, std)
>>> round(float(torch.cat(list(normed)).mean()), 6)
0.0
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from recipes.toolkit.data.packed import position

DTYPE = np.dtype("<f4")  # little-endian float32, whatever the host


class FeatureStore(Sequence[Tensor]):
    """Items ``[frames_i, dim]`` of one ``[frames, dim]`` array, optionally normalised.

    Args:
        data: the ``[frames, dim]`` float32 array (a ``numpy.memmap`` or an in-memory array).
        starts, lengths: each item's first row and number of rows.
        path: the file ``data`` maps, if any (what a pickled store reopens).
        mean, std: ``[groups, dim]`` float64 statistics, and ``groups`` each item's row of them;
            an item is returned as ``((x - mean) / std)`` rounded to float32. ``None``: raw.
    """

    def __init__(
        self,
        data: np.ndarray,
        starts: Sequence[int],
        lengths: Sequence[int],
        path: Path | None = None,
        mean: Tensor | None = None,
        std: Tensor | None = None,
        groups: Sequence[int] | None = None,
    ):
        if data.ndim != 2:
            raise ValueError(f"features must be a [frames, dim] array, got shape {data.shape}")
        self._data = data
        self._starts = np.asarray(starts, dtype=np.int64)
        self._lengths = np.asarray(lengths, dtype=np.int64)
        self.path = path
        self._mean, self._std = mean, std
        self._groups = None if groups is None else np.asarray(groups, dtype=np.int64)

    @classmethod
    def from_file(cls, path: Path, dim: int, lengths: Sequence[int]) -> FeatureStore:
        """Memory-map ``path``: raw little-endian float32 rows of ``dim`` values, the items one
        after another (an empty split needs no mapping)."""
        frames = int(sum(lengths))
        if frames == 0:
            data: np.ndarray = np.zeros((0, dim), dtype=DTYPE)
        else:
            data = np.memmap(path, dtype=DTYPE, mode="r", shape=(frames, dim))
        starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)[:-1]]) if lengths else []
        return cls(data, starts, lengths, path=Path(path))

    @classmethod
    def from_tensors(cls, feats: Sequence[Tensor]) -> FeatureStore:
        """An in-memory store of ``feats`` (for tests and single utterances)."""
        dim = feats[0].shape[1] if feats else 0
        data = torch.cat(list(feats)).float().numpy() if feats else np.zeros((0, dim), DTYPE)
        lengths = [f.shape[0] for f in feats]
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if lengths else []
        return cls(data, starts, lengths)

    @property
    def dim(self) -> int:
        return int(self._data.shape[1])

    @property
    def lengths(self) -> list[int]:
        """Frames per item."""
        return self._lengths.tolist()

    @property
    def memory_mapped(self) -> bool:
        """Whether the rows are read from a file's pages (not held in this process)."""
        return isinstance(self._data, np.memmap)

    def __len__(self) -> int:
        return len(self._lengths)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = position(i, len(self), "item of a store")
        start = int(self._starts[i])
        x = torch.from_numpy(np.array(self._data[start : start + int(self._lengths[i])]))
        return self.normalize_item(i, x)

    def normalize_item(self, i: int, x: Tensor) -> Tensor:
        """Raw features ``x [frames, dim]`` normalised as item ``i`` is (its speaker's or the
        global statistics; ``x`` itself when the store is raw): for features of item ``i``
        computed afresh, e.g. from augmented audio.

        >>> store = FeatureStore.from_tensors([torch.ones(2, 1)]).normalized(
        ...     torch.tensor([1.0]), torch.tensor([2.0]))
        >>> store.normalize_item(0, torch.tensor([[5.0]]))
        tensor([[2.]])
        """
        if self._mean is None:
            return x
        g = 0 if self._groups is None else int(self._groups[i])
        return ((x.double() - self._mean[g]) / self._std[g]).float()

    def __iter__(self) -> Iterator[Tensor]:
        return (self[i] for i in range(len(self)))

    def subset(self, keep: Sequence[int]) -> FeatureStore:
        """The items at positions ``keep``, in that order (the array is shared, not copied)."""
        keep = np.asarray(keep, dtype=np.int64)
        groups = None if self._groups is None else self._groups[keep]
        return FeatureStore(
            self._data, self._starts[keep], self._lengths[keep], self.path,
            self._mean, self._std, groups,
        )  # fmt: skip

    def normalized(
        self, mean: Tensor, std: Tensor, groups: Sequence[int] | None = None
    ) -> FeatureStore:
        """The same items normalised with ``mean``/``std`` (``[dim]``, or ``[groups, dim]`` with
        each item's row in ``groups``)."""
        mean, std = mean.double(), std.double()
        if groups is None:
            mean, std = mean.reshape(1, -1), std.reshape(1, -1)
        return FeatureStore(
            self._data, self._starts, self._lengths, self.path, mean, std, groups
        )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self.memory_mapped:  # a pickled memmap would carry every row
            state["_data"] = (str(self.path), self._data.shape)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["_data"], tuple):
            path, shape = state["_data"]
            state["_data"] = np.memmap(path, dtype=DTYPE, mode="r", shape=tuple(shape))
        self.__dict__.update(state)


def moments(feats: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation (unbiased, floored at 1e-5) of all frames of ``feats``,
    accumulated in float64 item by item (two passes: memory does not grow with the corpus).

    >>> mean, std = moments([torch.tensor([[1.0], [3.0]]), torch.tensor([[5.0]])])
    >>> mean.item(), std.item()
    (3.0, 2.0)
    """
    if not len(feats):
        raise ValueError("no features to compute statistics from")
    total, frames = None, 0
    for f in feats:
        s = f.double().sum(0)
        total = s if total is None else total + s
        frames += f.shape[0]
    if frames == 0:
        raise ValueError("no frames to compute statistics from")
    mean = total / frames
    squares = sum(((f.double() - mean) ** 2).sum(0) for f in feats)
    std = (squares / max(frames - 1, 1)).sqrt()
    return mean, std.clamp_min(1e-5)
