"""Phone error rate: alignment counts, a DDP-synced metric, per-speaker tables, confusions."""

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torchmetrics import Metric


@dataclass(frozen=True)
class ErrorCounts:
    """Substitutions, deletions, insertions and reference length of one or more alignments."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def per(self) -> float:
        """``100 * (S + D + I) / N``."""
        return 100.0 * self.errors / max(self.reference, 1)

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.reference + other.reference,
        )


def apply_score_map(labels: list[str], score_map: Mapping[str, str] | None) -> list[str]:
    """Labels mapped to the scoring set (``""`` deletes one); ``None`` keeps them as they are.

    >>> apply_score_map(["vcl", "q", "aa"], {"vcl": "sil", "q": "", "aa": "aa"})
    ['sil', 'aa']
    """
    if score_map is None:
        return list(labels)
    mapped = (score_map[label] if label in score_map else _unmapped(label) for label in labels)
    return [m for m in mapped if m]


def _unmapped(label: str) -> str:
    raise KeyError(f"label {label!r} is not in the score map (the checkpoint's score_map)")


def align(reference: list[str], hypothesis: list[str]) -> list[tuple[str | None, str | None]]:
    """Levenshtein alignment as ``(ref, hyp)`` pairs; ``None`` marks an insertion or deletion.

    >>> align(["a", "b", "c"], ["a", "x", "c", "d"])
    [('a', 'a'), ('b', 'x'), ('c', 'c'), (None, 'd')]
    """
    n, m = len(reference), len(hypothesis)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            diagonal = cost[i - 1][j - 1] + (reference[i - 1] != hypothesis[j - 1])
            cost[i][j] = min(diagonal, cost[i - 1][j] + 1, cost[i][j - 1] + 1)
    pairs: list[tuple[str | None, str | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if (
            i > 0
            and j > 0
            and cost[i][j] == cost[i - 1][j - 1] + (reference[i - 1] != hypothesis[j - 1])
        ):
            pairs.append((reference[i - 1], hypothesis[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            pairs.append((reference[i - 1], None))
            i -= 1
        else:
            pairs.append((None, hypothesis[j - 1]))
            j -= 1
    return pairs[::-1]


def count_errors(reference: list[str], hypothesis: list[str]) -> ErrorCounts:
    """Error counts of one utterance.

    >>> count_errors(["a", "b", "c"], ["a", "x", "c", "d"]).per
    66.66666666666667
    """
    pairs = align(reference, hypothesis)
    return ErrorCounts(
        substitutions=sum(1 for r, h in pairs if r is not None and h is not None and r != h),
        deletions=sum(1 for _, h in pairs if h is None),
        insertions=sum(1 for r, _ in pairs if r is None),
        reference=len(reference),
    )


def confusions(pairs_per_utterance: list[list[tuple[str | None, str | None]]]) -> Counter:
    """Count ``(ref, hyp)`` error pairs over many alignments (``None``: deletion/insertion)."""
    counter: Counter = Counter()
    for pairs in pairs_per_utterance:
        counter.update((r, h) for r, h in pairs if r != h)
    return counter


class PhoneErrorRate(Metric):
    """PER summed over a set: ``100 * (S + D + I) / N``, synced across DDP ranks by sum.

    Example:
        >>> metric = PhoneErrorRate()
        >>> metric.update([["a", "b"], ["c"]], [["a"], ["c", "c"]])
        >>> round(metric.compute().item(), 2)
        66.67
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("substitutions", "deletions", "insertions", "reference"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, references: list[list[str]], hypotheses: list[list[str]]) -> None:
        total = ErrorCounts()
        for ref, hyp in zip(references, hypotheses, strict=True):
            total = total + count_errors(ref, hyp)
        self.substitutions += total.substitutions
        self.deletions += total.deletions
        self.insertions += total.insertions
        self.reference += total.reference

    def compute(self) -> torch.Tensor:
        errors = self.substitutions + self.deletions + self.insertions
        return 100.0 * errors.double() / self.reference.clamp(min=1).double()
