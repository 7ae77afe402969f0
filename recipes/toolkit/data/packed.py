"""Per-utterance lists of symbols or segments, and per-utterance strings, packed into flat
numpy columns.

A corpus of 100 hours has over 100,000 utterances; as Python lists of tuples their phone
segments alone would take about 5 KB each. Packed, a segment costs 20 bytes (two 64-bit bounds
and a 32-bit symbol index) and an utterance 8 more (its offset): the lists are rebuilt, as plain
Python values, only for the utterance that is asked for.

Strings kept per utterance (ids, speakers, audio paths) are packed too (:class:`PackedStrings`):
as Python strings made while the corpus is read, each would pin the allocator's arena it lands
in among the reader's freed temporaries. Measured on a 7504-utterance corpus read in-process:
packing them freed 7 of the 66 arenas (1 MiB each) the reading left pinned; the rest were other
survivors, which is why the reading runs in a child process
(:mod:`recipes.toolkit.data.child_process`).

>>> segments = PackedLists.of_segments([[(0, 4, "h#"), (4, 9, "aa")], [(0, 2, "h#")]])
>>> len(segments), segments[0], segments[-1]
(2, [(0, 4, 'h#'), (4, 9, 'aa')], [(0, 2, 'h#')])
>>> PackedLists.of_symbols([["h#", "aa"], []]).subset([1, 0])[1]
['h#', 'aa']
>>> PackedStrings.of(["fadg0_sa1", "mdab0_sx49"]).subset([1])[0]
'mdab0_sx49'
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np


class _Packed(Sequence):
    """A sequence whose item ``i`` is built from ``offsets[i]:offsets[i + 1]`` of flat columns."""

    offsets: np.ndarray
    what = "item"

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._item(position(i, len(self), self.what))

    def __iter__(self) -> Iterator:
        return (self[i] for i in range(len(self)))

    def _item(self, i: int):
        raise NotImplementedError


def position(i: int, length: int, what: str = "item") -> int:
    """``i`` as a position in ``range(length)`` (negative: from the end), or an IndexError.

    >>> position(-1, 3)
    2
    """
    if i < 0:
        i += length
    if not 0 <= i < length:
        raise IndexError(f"{what} {i} of {length}")
    return i


class PackedLists(_Packed):
    """Lists of symbols, or of ``(start, end, symbol)`` segments, one list per utterance.

    Args:
        symbols: the symbol table (each distinct symbol once).
        ids: every element's symbol index, all lists one after another.
        offsets: ``len + 1`` positions: list ``i`` is elements ``offsets[i]:offsets[i + 1]``.
        starts, ends: the segments' bounds (frames or seconds), or None for symbol lists.
    """

    what = "list"

    def __init__(
        self,
        symbols: Sequence[str],
        ids: np.ndarray,
        offsets: np.ndarray,
        starts: np.ndarray | None = None,
        ends: np.ndarray | None = None,
    ):
        self.symbols = list(symbols)
        self.ids, self.offsets = ids, offsets
        self.starts, self.ends = starts, ends

    @classmethod
    def of_symbols(cls, lists: Sequence[Sequence[str]]) -> PackedLists:
        """Pack lists of symbols."""
        table: dict[str, int] = {}
        ids = [table.setdefault(s, len(table)) for items in lists for s in items]
        return cls(list(table), np.asarray(ids, np.int32), _offsets(lists))

    @classmethod
    def of_segments(cls, lists: Sequence[Sequence[tuple]]) -> PackedLists:
        """Pack lists of ``(start, end, symbol)``; integer bounds stay integers, others floats."""
        table: dict[str, int] = {}
        ids = [table.setdefault(seg[2], len(table)) for items in lists for seg in items]
        bounds = [(seg[0], seg[1]) for items in lists for seg in items]
        whole = all(isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer))
                    for a, b in bounds)  # fmt: skip
        column = np.asarray(bounds, np.int64 if whole else np.float64).reshape(-1, 2)
        return cls(list(table), np.asarray(ids, np.int32), _offsets(lists),
                   column[:, 0].copy(), column[:, 1].copy())  # fmt: skip

    def _item(self, i: int) -> list:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        symbols = [self.symbols[k] for k in self.ids[a:b].tolist()]
        if self.starts is None:
            return symbols
        return list(zip(self.starts[a:b].tolist(), self.ends[a:b].tolist(), symbols, strict=True))

    def subset(self, keep: Sequence[int]) -> PackedLists:
        """The lists at positions ``keep``, in that order."""
        keep = np.asarray(keep, dtype=np.int64)
        lengths = (self.offsets[1:] - self.offsets[:-1])[keep]
        rows = (
            np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in keep])
            if len(keep)
            else np.zeros(0, np.int64)
        )
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        starts = None if self.starts is None else self.starts[rows]
        ends = None if self.ends is None else self.ends[rows]
        return PackedLists(self.symbols, self.ids[rows], offsets, starts, ends)


class PackedStrings(_Packed):
    """Strings in one UTF-8 buffer with their offsets; each is decoded when asked for.

    Args:
        data: every string's UTF-8 bytes, one after another (``uint8``).
        offsets: ``len + 1`` byte positions: string ``i`` is ``data[offsets[i]:offsets[i + 1]]``.

    >>> ids = PackedStrings.of(["a", "bé", ""])
    >>> len(ids), ids[1], ids[-1], list(ids) == ["a", "bé", ""], ids == ["a", "bé", ""]
    (3, 'bé', '', True, True)
    """

    what = "string"

    def __init__(self, data: np.ndarray, offsets: np.ndarray):
        self.data, self.offsets = data, offsets

    @classmethod
    def of(cls, strings: Iterable[str]) -> PackedStrings:
        """Pack ``strings`` (any iterable of ``str``)."""
        encoded = [s.encode("utf-8") for s in strings]
        data = np.frombuffer(b"".join(encoded), np.uint8).copy()
        return cls(data, _offsets(encoded))

    def _item(self, i: int) -> str:
        return self.data[int(self.offsets[i]) : int(self.offsets[i + 1])].tobytes().decode()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (PackedStrings, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to lists, so unhashable as they are

    def __repr__(self) -> str:
        return f"PackedStrings({list(self)!r})"

    def subset(self, keep: Sequence[int]) -> PackedStrings:
        """The strings at positions ``keep``, in that order."""
        return PackedStrings.of(self[i] for i in keep)


def _offsets(lists: Sequence[Sequence]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum([len(items) for items in lists])]).astype(np.int64)


def subset(values: Sequence, keep: Sequence[int]) -> Sequence:
    """``values`` at positions ``keep``: a packed or stored sequence's own ``subset``, else a list.

    >>> subset(["a", "b", "c"], [2, 0])
    ['c', 'a']
    """
    if hasattr(values, "subset"):
        return values.subset(keep)
    return [values[i] for i in keep]
