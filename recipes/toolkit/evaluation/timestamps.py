"""How close recognised phone times come to reference boundaries, phone by matched phone.

The hypothesis phones are aligned to the reference phones (the scorer's Levenshtein
alignment, :func:`~recipes.toolkit.evaluation.scoring.align`). A reference boundary is the
start of a reference phone other than the first; it is *scored* when a phone on either side of
it is matched by the same phone in the hypothesis, and its hypothesis time is the start of the
phone matching the one after it, else the end of the phone matching the one before it. It is
*hit* within a tolerance when the two times are at most that far apart. A boundary with no
matched phone on either side counts as missed in :meth:`BoundaryCounts.share` and is left out of
:meth:`BoundaryCounts.scored_share`.

Segments are ``(start, end, label)`` in seconds (any objects with ``start``, ``end`` and
``phone`` are read too, such as timed phones).

>>> reference = [(0.0, 0.1, "sil"), (0.1, 0.3, "aa"), (0.3, 0.4, "b"), (0.4, 0.6, "sil")]
>>> hypothesis = [(0.0, 0.115, "sil"), (0.115, 0.34, "aa"), (0.34, 0.6, "sil")]  # b deleted
>>> counts = boundary_counts(reference, hypothesis, tolerances=(0.02, 0.05))
>>> counts.reference, counts.scored, counts.hits  # 15 ms, 40 ms (b's end: aa's), 60 ms
(3, 3, {0.02: 1, 0.05: 2})
>>> round(counts.share(0.02), 3), round(counts.share(0.05), 3)
(0.333, 0.667)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from recipes.toolkit.evaluation.scoring import align

TOLERANCES = (0.010, 0.020, 0.040)  # seconds
# Slack added to every tolerance so that a distance of exactly one tolerance computed from
# decimal times (0.30 - 0.28) is not rejected for floating-point rounding.
ROUNDING_SLACK = 1e-9


@dataclass(frozen=True)
class BoundaryCounts:
    """Reference boundaries, those scored (a matched phone beside them), and hits per
    tolerance (seconds), of one utterance or summed (``+``) over many.

    >>> total = BoundaryCounts(4, 3, {0.02: 2}, 1) + BoundaryCounts(6, 6, {0.02: 5}, 1)
    >>> total.share(0.02), round(total.scored_share(0.02), 3)
    (0.7, 0.778)
    """

    reference: int = 0
    scored: int = 0
    hits: dict[float, int] = field(default_factory=dict)
    utterances: int = 0

    def __add__(self, other: BoundaryCounts) -> BoundaryCounts:
        keys = set(self.hits) | set(other.hits)
        return BoundaryCounts(
            self.reference + other.reference,
            self.scored + other.scored,
            {k: self.hits.get(k, 0) + other.hits.get(k, 0) for k in sorted(keys)},
            self.utterances + other.utterances,
        )

    def share(self, tolerance: float) -> float:
        """Hits within ``tolerance`` over all reference boundaries (nan without any)."""
        return self.hits[tolerance] / self.reference if self.reference else float("nan")

    def scored_share(self, tolerance: float) -> float:
        """Hits within ``tolerance`` over the scored reference boundaries (nan without any)."""
        return self.hits[tolerance] / self.scored if self.scored else float("nan")


def _spans(segments: Sequence) -> list[tuple[float, float, str]]:
    spans = []
    for segment in segments:
        if hasattr(segment, "phone"):
            spans.append((float(segment.start), float(segment.end), str(segment.phone)))
        else:
            start, end, label = segment
            spans.append((float(start), float(end), str(label)))
    return spans


def matched_phones(reference: Sequence[str], hypothesis: Sequence[str]) -> dict[int, int]:
    """Reference index -> hypothesis index of the phones the alignment pairs with an equal one.

    >>> matched_phones(["a", "b", "c"], ["a", "x", "c", "d"])
    {0: 0, 2: 2}
    """
    matches, i, j = {}, 0, 0
    for ref, hyp in align(list(reference), list(hypothesis)):
        if ref is not None and ref == hyp:
            matches[i] = j
        i += ref is not None
        j += hyp is not None
    return matches


def boundary_counts(
    reference: Sequence, hypothesis: Sequence, tolerances: Sequence[float] = TOLERANCES
) -> BoundaryCounts:
    """The :class:`BoundaryCounts` of one utterance (see the module docstring)."""
    ref, hyp = _spans(reference), _spans(hypothesis)
    matches = matched_phones([s[2] for s in ref], [s[2] for s in hyp])
    scored, hits = 0, dict.fromkeys(tolerances, 0)
    for k in range(1, len(ref)):
        if k in matches:
            time = hyp[matches[k]][0]
        elif k - 1 in matches:
            time = hyp[matches[k - 1]][1]
        else:
            continue
        scored += 1
        for tolerance in tolerances:
            hits[tolerance] += abs(time - ref[k][0]) <= tolerance + ROUNDING_SLACK
    return BoundaryCounts(max(len(ref) - 1, 0), scored, hits, 1)
