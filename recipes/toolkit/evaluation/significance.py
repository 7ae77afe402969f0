"""Is one recogniser better than another on the same test utterances?

Two paired tests on per-utterance error counts (each utterance scored against the same
reference by both systems):

- :func:`mapsswe`: NIST's matched-pairs sentence-segment word error test. A segment here is a
  whole utterance. NIST's ``sc_stats`` cuts segments finer, at runs of words that both systems'
  alignments got right; whole utterances are the common simplification (they are independent
  of one another, which is what the test needs, and need no joint alignment of the systems).
- :func:`paired_bootstrap`: a confidence interval of the PER difference from resampling
  utterances with replacement (the paired bootstrap of Bisani and Ney, 2004).

:func:`read_hyp_ref` reads a run's ``eval/<split>_hyp_ref.txt``; :func:`pair_files` lines two of
them up; :func:`pool_runs` merges the seeds of one configuration.

Example:
    >>> result = mapsswe([3, 4, 2, 5], [2, 2, 2, 4])
    >>> round(result.statistic, 3), round(result.p_value, 4)
    (2.449, 0.0143)
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# utterance id -> (errors, reference length); errors are a float once averaged over seeds.
UtteranceErrors = Mapping[str, tuple[float, int]]


@dataclass(frozen=True)
class MatchedPairs:
    """Result of :func:`mapsswe`: ``mean_difference`` is the mean of ``errors_a - errors_b``
    per segment (positive: A makes more errors), ``statistic`` the standardised mean ``W`` and
    ``p_value`` its two-sided p-value under the standard normal."""

    n: int
    mean_difference: float
    statistic: float
    p_value: float


@dataclass(frozen=True)
class Bootstrap:
    """Result of :func:`paired_bootstrap`: PER_A - PER_B in percentage points, observed and as
    a ``confidence`` interval, and the share of resamples in which A has the lower PER."""

    difference: float
    ci_low: float
    ci_high: float
    prob_a_better: float
    samples: int
    confidence: float


@dataclass(frozen=True)
class PairedErrors:
    """Per-utterance errors of two systems on the same utterances, in ``utt_ids`` order."""

    utt_ids: list[str]
    errors_a: np.ndarray
    errors_b: np.ndarray
    reference: np.ndarray


def mapsswe(errors_a: Sequence[float], errors_b: Sequence[float]) -> MatchedPairs:
    """Matched-pairs test: ``Z_i = errors_a[i] - errors_b[i]`` per segment (utterance),
    ``W = mean(Z) / (std(Z) / sqrt(n))`` with the sample standard deviation, and the two-sided
    p-value ``erfc(|W| / sqrt(2))``.

    With no spread in ``Z`` the normal approximation is undefined and the answer is exact:
    identical counts everywhere give ``p = 1``, the same nonzero difference everywhere
    ``p = 0`` (``W`` is then infinite, with the sign of the difference).

    >>> r = mapsswe([1, 2, 3, 4], [0, 0, 3, 3])  # Z = [1, 2, 0, 1]
    >>> r.n, r.mean_difference, round(r.statistic, 3), round(r.p_value, 4)
    (4, 1.0, 2.449, 0.0143)
    >>> mapsswe([2, 1, 0], [2, 1, 0]).p_value, mapsswe([3, 2, 1], [2, 1, 0]).p_value
    (1.0, 0.0)
    """
    a, b = np.asarray(errors_a, dtype=float), np.asarray(errors_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two equally long 1-d sequences, got shapes {a.shape}, {b.shape}")
    n = len(a)
    if n < 2:
        raise ValueError(f"the matched-pairs test needs at least two segments, got {n}")
    z = a - b
    if np.all(z == z[0]):  # no spread (tested exactly: a float mean can be off by rounding)
        if z[0] == 0.0:
            return MatchedPairs(n, 0.0, 0.0, 1.0)
        return MatchedPairs(n, float(z[0]), math.copysign(math.inf, z[0]), 0.0)
    mean, std = float(z.mean()), float(z.std(ddof=1))
    statistic = mean / (std / math.sqrt(n))
    return MatchedPairs(n, mean, statistic, math.erfc(abs(statistic) / math.sqrt(2.0)))


def paired_bootstrap(
    errors_a: Sequence[float],
    errors_b: Sequence[float],
    reference_lengths: Sequence[int],
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Bootstrap:
    """Percentile interval of ``PER_A - PER_B = 100 * (sum errors_a - sum errors_b) / sum refs``
    over ``samples`` resamples of the utterances with replacement (the same utterances for both
    systems), drawn by ``numpy.random.default_rng(seed)``: the same seed, the same answer.

    >>> r = paired_bootstrap([2, 3, 1, 4], [1, 2, 1, 2], [10, 10, 10, 10], seed=1)
    >>> r.difference, r.ci_low <= r.difference <= r.ci_high, r.prob_a_better
    (10.0, True, 0.0)
    """
    a, b = np.asarray(errors_a, dtype=float), np.asarray(errors_b, dtype=float)
    refs = np.asarray(reference_lengths, dtype=float)
    if not (a.shape == b.shape == refs.shape) or a.ndim != 1 or len(a) == 0:
        raise ValueError(
            f"need three equally long non-empty 1-d sequences, got {a.shape}, {b.shape}, "
            f"{refs.shape}"
        )
    if samples < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need samples >= 1 and 0 < confidence < 1: {samples}, {confidence}")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(a), size=(samples, len(a)))
    diffs = 100.0 * (a - b)[index].sum(axis=1) / np.maximum(refs[index].sum(axis=1), 1.0)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(diffs, [tail, 100.0 - tail])
    observed = 100.0 * float((a - b).sum()) / max(float(refs.sum()), 1.0)
    return Bootstrap(
        difference=observed,
        ci_low=float(low),
        ci_high=float(high),
        prob_a_better=float(np.mean(diffs < 0.0)),
        samples=samples,
        confidence=confidence,
    )


def parse_hyp_ref(text: str, source: str = "<text>") -> dict[str, tuple[int, int]]:
    """``{utt_id: (errors, reference_length)}`` from the text of a ``<split>_hyp_ref.txt``.

    >>> parse_hyp_ref("u1\\terrors=2/7\\n  REF: a b\\n  HYP: a\\nu2\\terrors=0/3\\n")
    {'u1': (2, 7), 'u2': (0, 3)}
    """
    table: dict[str, tuple[int, int]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line[0].isspace():  # blank, or an indented REF:/HYP: line
            continue
        utt_id, _, counts = line.partition("\terrors=")
        errors, slash, reference = counts.partition("/")
        if not slash or not errors.strip().isdigit() or not reference.strip().isdigit():
            raise ValueError(f"{source}:{number}: not '<utt_id>\\terrors=E/N': {line[:80]!r}")
        if utt_id in table:
            raise ValueError(f"{source}:{number}: utterance {utt_id!r} appears twice")
        table[utt_id] = (int(errors), int(reference))
    return table


def read_hyp_ref(path: Path) -> dict[str, tuple[int, int]]:
    """``{utt_id: (errors, reference_length)}`` of a run's ``eval/<split>_hyp_ref.txt``.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "test_hyp_ref.txt"
    ...     _ = path.write_text("u1\\terrors=1/4\\n  REF: a b c d\\n  HYP: a b c\\n")
    ...     read_hyp_ref(path)
    {'u1': (1, 4)}
    """
    path = Path(path)
    return parse_hyp_ref(path.read_text(), str(path))


def pair_utterances(
    a: UtteranceErrors, b: UtteranceErrors, name_a: str = "A", name_b: str = "B"
) -> PairedErrors:
    """Line up two ``{utt_id: (errors, reference_length)}`` tables (sorted by utterance id).

    Raises ``ValueError`` naming both sides when their utterances or reference lengths differ.

    >>> p = pair_utterances({"u2": (1, 5), "u1": (0, 3)}, {"u1": (2, 3), "u2": (1, 5)})
    >>> p.utt_ids, p.errors_a.tolist(), p.errors_b.tolist(), p.reference.tolist()
    (['u1', 'u2'], [0.0, 1.0], [2.0, 1.0], [3, 5])
    """
    if a.keys() != b.keys():
        only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
        raise ValueError(
            f"{name_a} ({len(a)} utterances) and {name_b} ({len(b)} utterances) do not score the "
            f"same utterances: {len(only_a)} only in the first {only_a[:3]}, {len(only_b)} only "
            f"in the second {only_b[:3]}"
        )
    utt_ids = sorted(a)
    for utt in utt_ids:
        if a[utt][1] != b[utt][1]:
            raise ValueError(
                f"utterance {utt!r} has {a[utt][1]} reference phones in {name_a} but "
                f"{b[utt][1]} in {name_b} (a different test set or scoring map?)"
            )
    return PairedErrors(
        utt_ids=utt_ids,
        errors_a=np.array([a[u][0] for u in utt_ids], dtype=float),
        errors_b=np.array([b[u][0] for u in utt_ids], dtype=float),
        reference=np.array([a[u][1] for u in utt_ids], dtype=int),
    )


def pair_files(path_a: Path, path_b: Path) -> PairedErrors:
    """Per-utterance errors of two runs' ``<split>_hyp_ref.txt`` files, lined up.

    Raises ``ValueError`` naming both files and their utterance counts when the utterance sets
    differ.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     a, b = Path(tmp) / "a.txt", Path(tmp) / "b.txt"
    ...     _ = a.write_text("u1\\terrors=3/9\\nu2\\terrors=1/4\\n")
    ...     _ = b.write_text("u2\\terrors=0/4\\nu1\\terrors=2/9\\n")
    ...     pair_files(a, b).errors_a.tolist(), pair_files(a, b).errors_b.tolist()
    ([3.0, 1.0], [2.0, 0.0])
    """
    return pair_utterances(read_hyp_ref(path_a), read_hyp_ref(path_b), str(path_a), str(path_b))


def pool_runs(paths: Sequence[Path]) -> dict[str, tuple[float, int]]:
    """One configuration's seeds merged: per utterance, the errors summed over the runs'
    ``<split>_hyp_ref.txt`` files and divided by their number (the mean), with the reference
    length they share.

    Dividing by the number of seeds puts configurations with different numbers of seeds on
    one scale; with equal numbers it changes neither :func:`mapsswe`'s statistic nor
    :func:`paired_bootstrap`'s PER difference, which are the same for summed counts.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     a, b = Path(tmp) / "s1.txt", Path(tmp) / "s2.txt"
    ...     _ = a.write_text("u1\\terrors=3/9\\nu2\\terrors=1/4\\n")
    ...     _ = b.write_text("u1\\terrors=2/9\\nu2\\terrors=0/4\\n")
    ...     pool_runs([a, b])
    {'u1': (2.5, 9), 'u2': (0.5, 4)}
    """
    if not paths:
        raise ValueError("no runs to pool")
    tables = [read_hyp_ref(path) for path in paths]
    first = tables[0]
    summed = {utt: float(errors) for utt, (errors, _) in first.items()}
    for path, table in zip(paths[1:], tables[1:], strict=True):
        paired = pair_utterances(first, table, str(paths[0]), str(path))
        for utt, errors in zip(paired.utt_ids, paired.errors_b, strict=True):
            summed[utt] += float(errors)
    return {utt: (summed[utt] / len(tables), first[utt][1]) for utt in sorted(first)}
