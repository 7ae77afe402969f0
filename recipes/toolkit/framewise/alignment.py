"""Phone alignments: internal boundaries, boundary accuracy within tolerances, CTM files.

Example:
    >>> reference = boundaries([(0.0, 0.12, "a"), (0.12, 0.30, "b"), (0.30, 0.41, "c")])
    >>> reference
    [0.12, 0.3]
    >>> boundary_accuracy(reference, [0.125, 0.33], tolerances=(0.01, 0.04))
    {0.01: 0.5, 0.04: 1.0}
"""

import math
import os
from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

from recipes.toolkit.run.atomic import atomic_write_text

Time = TypeVar("Time", int, float)
CtmRecord = tuple[str, float, float, str]

# Slack (seconds) added to every tolerance so that a distance of exactly one tolerance, computed
# from decimal times such as 0.30 - 0.26, is not rejected for floating-point rounding.
ROUNDING_SLACK = 1e-9


def boundaries(segments: Sequence[tuple[Time, Time, Hashable]]) -> list[Time]:
    """Internal boundaries of a segmentation: each segment's start except the first's.

    Works in any unit (frames or seconds); segments must be in time order.

    >>> boundaries([(0, 3, 7), (3, 5, 2), (5, 9, 7)])
    [3, 5]
    >>> boundaries([(0, 3, 7)])
    []
    """
    starts = [start for start, _, _ in segments]
    for previous, start in zip(starts[:-1], starts[1:], strict=True):
        if start < previous:
            raise ValueError(f"segments are not in time order: start {start} after {previous}")
    return starts[1:]


def matched_boundaries(
    reference_boundaries: Sequence[float], hypothesis_boundaries: Sequence[float], tolerance: float
) -> int:
    """Number of reference boundaries matched by a hypothesis boundary within ``tolerance``.

    Matching is greedy and one-to-one: reference boundaries are visited in increasing time
    order, and each takes the nearest still unmatched hypothesis boundary at distance
    ``<= tolerance`` (the earlier one on a tie), which then cannot match any other reference
    boundary. Greedy matching can match fewer pairs than the largest possible one-to-one
    matching when boundaries are closer together than ``2 * tolerance``.

    >>> matched_boundaries([0.10, 0.12], [0.11], tolerance=0.02)  # one hypothesis, one match
    1
    """
    if not (math.isfinite(tolerance) and tolerance >= 0.0):
        raise ValueError(f"tolerance must be finite and >= 0, got {tolerance}")
    unmatched = sorted(hypothesis_boundaries)
    matches = 0
    for reference in sorted(reference_boundaries):
        candidates = [
            (abs(hypothesis - reference), index)
            for index, hypothesis in enumerate(unmatched)
            if abs(hypothesis - reference) <= tolerance + ROUNDING_SLACK
        ]
        if candidates:
            _, index = min(candidates)
            del unmatched[index]
            matches += 1
    return matches


def boundary_accuracy(
    reference_boundaries: Sequence[float],
    hypothesis_boundaries: Sequence[float],
    tolerances: Sequence[float] = (0.010, 0.020, 0.040),
) -> dict[float, float]:
    """Share of reference boundaries (seconds) with a hypothesis boundary within each tolerance.

    Each tolerance is scored independently with :func:`matched_boundaries` (greedy, in time
    order, nearest first, each hypothesis boundary matching at most one reference boundary).
    With no reference boundaries the share is undefined and every value is ``nan``; to pool
    utterances, sum :func:`matched_boundaries` and the reference counts instead.

    >>> boundary_accuracy([0.10, 0.30, 0.50], [0.105, 0.28, 0.60])
    {0.01: 0.3333333333333333, 0.02: 0.6666666666666666, 0.04: 0.6666666666666666}
    """
    if not reference_boundaries:
        return {tolerance: math.nan for tolerance in tolerances}
    return {
        tolerance: matched_boundaries(reference_boundaries, hypothesis_boundaries, tolerance)
        / len(reference_boundaries)
        for tolerance in tolerances
    }


def _ctm_line(record: CtmRecord) -> str:
    utterance_id, start, duration, phone = record
    for name, token in (("utterance id", utterance_id), ("phone", phone)):
        if not token or any(character.isspace() for character in token):
            raise ValueError(f"{name} {token!r} must be non-empty and without whitespace")
    if not (math.isfinite(start) and start >= 0.0 and math.isfinite(duration) and duration >= 0):
        raise ValueError(f"start {start} and duration {duration} must be finite and >= 0")
    return f"{utterance_id} 1 {start:.3f} {duration:.3f} {phone}\n"


def write_ctm(path: str | os.PathLike, records: Iterable[CtmRecord]) -> None:
    """Write ``(utterance_id, start_seconds, duration_seconds, phone)`` records as a CTM file.

    One line per phone, ``"<utt> 1 <start:.3f> <dur:.3f> <phone>"`` (channel 1). The file is
    written atomically (:func:`~recipes.toolkit.run.atomic.atomic_write_text`): on any error
    ``path`` is left untouched.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as directory:
    ...     write_ctm(f"{directory}/a.ctm", [("u1", 0.0, 0.25, "sil"), ("u1", 0.25, 0.1, "k")])
    ...     print(open(f"{directory}/a.ctm").read(), end="")
    u1 1 0.000 0.250 sil
    u1 1 0.250 0.100 k
    """
    atomic_write_text(path, "".join(_ctm_line(record) for record in records))


def read_ctm(path: str | os.PathLike) -> list[CtmRecord]:
    """Parse a CTM file written by :func:`write_ctm` into ``(utt, start, duration, phone)``.

    Blank lines and ``;;`` comment lines are skipped; the channel column is not returned.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as directory:
    ...     write_ctm(f"{directory}/a.ctm", [("u1", 0.5, 0.125, "aa")])
    ...     read_ctm(f"{directory}/a.ctm")
    [('u1', 0.5, 0.125, 'aa')]
    """
    records: list[CtmRecord] = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip() or line.startswith(";;"):
                continue
            fields = line.split()
            if len(fields) != 5:
                raise ValueError(f"{path}:{number}: expected 5 CTM fields, got {len(fields)}")
            utterance_id, _channel, start, duration, phone = fields
            try:
                records.append((utterance_id, float(start), float(duration), phone))
            except ValueError as error:
                raise ValueError(f"{path}:{number}: bad start or duration: {line!r}") from error
    return records
