"""How well a recogniser's phone times match TIMIT's ``.PHN`` boundaries, on a split.

The reference is each utterance's ``.PHN`` segmentation folded to the 39-phone scoring set as
the PER reference is (``q`` deleted, its time given to the phone after it; equal neighbours kept
apart), the hypothesis the recogniser's timed phones in the scoring set; they are compared phone
by matched phone (:mod:`recipes.toolkit.evaluation.timestamps`).

>>> from pathlib import Path
>>> from recipes.timit.corpus import Utterance
>>> utt = Utterance("u", "s", "dr1", "dev", Path("a.wav"), Path("a.phn"),
...                 [(0, 1600, "h#"), (1600, 2000, "q"), (2000, 4000, "ix"), (4000, 4800, "h#")])
>>> reference_phones(utt)  # doctest: +NORMALIZE_WHITESPACE
[TimedPhone(phone='sil', start=0.0, end=0.1), TimedPhone(phone='ih', start=0.1, end=0.25),
 TimedPhone(phone='sil', start=0.25, end=0.3)]
"""

from __future__ import annotations

from collections.abc import Sequence

from recipes.timit.corpus import Utterance
from recipes.timit.phones import PHONES_61, map_phone
from recipes.toolkit.data.feature_config import SAMPLE_RATE
from recipes.toolkit.evaluation.scoring import ErrorCounts, count_errors
from recipes.toolkit.evaluation.timestamps import TOLERANCES, BoundaryCounts, boundary_counts
from recipes.toolkit.framewise.alignment import boundaries, matched_boundaries
from recipes.toolkit.inference import Recognizer
from recipes.toolkit.package.timing import TimedPhone, map_segments

FOLD_39 = {phone: map_phone(phone, 39) or "" for phone in PHONES_61}


def reference_phones(utterance: Utterance) -> list[TimedPhone]:
    """The utterance's ``.PHN`` segments in seconds, folded to the 39-phone set."""
    timed = [TimedPhone(p, a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b, p in utterance.segments]
    return map_segments(timed, FOLD_39)


def measure_split(
    recognizer: Recognizer,
    utterances: Sequence[Utterance],
    tolerances: Sequence[float] = TOLERANCES,
    batch_size: int = 8,
) -> dict:
    """Boundary counts by matched phone, the alignment-free counts (nearest boundary, one to
    one, whatever the phones) and the error counts of the phones, over ``utterances``."""
    matched, errors = BoundaryCounts(), ErrorCounts()
    free = dict.fromkeys(tolerances, 0)
    exact = 0
    for first in range(0, len(utterances), batch_size):
        batch = utterances[first : first + batch_size]
        hypotheses = recognizer.transcribe_batch([u.wav for u in batch], batch_size=batch_size)
        for utterance, hypothesis in zip(batch, hypotheses, strict=True):
            reference = reference_phones(utterance)
            matched = matched + boundary_counts(reference, hypothesis, tolerances)
            counts = count_errors([p.phone for p in reference], [p.phone for p in hypothesis])
            errors = errors + counts
            exact += counts.errors == 0
            expected = boundaries([(p.start, p.end, p.phone) for p in reference])
            found = boundaries([(p.start, p.end, p.phone) for p in hypothesis])
            for tolerance in tolerances:
                free[tolerance] += matched_boundaries(expected, found, tolerance)
    return {"matched": matched, "any_boundary": free, "errors": errors, "exact": exact}
