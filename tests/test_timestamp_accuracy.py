"""Boundary accuracy of recognised phone times against reference segments, by matched phone."""

import itertools
import math

import pytest

from recipes.timit.corpus import read_timit
from recipes.timit.phones import map_phones
from recipes.timit.timing import measure_split, reference_phones
from recipes.toolkit.evaluation.scoring import count_errors
from recipes.toolkit.evaluation.timestamps import BoundaryCounts, boundary_counts, matched_phones
from recipes.toolkit.inference import Recognizer
from recipes.toolkit.package.timing import TimedPhone
from tests.inference_helpers import build, save_checkpoint

REFERENCE = [(0.0, 0.10, "sil"), (0.10, 0.25, "s"), (0.25, 0.40, "aa"), (0.40, 0.52, "t"),
             (0.52, 0.70, "sil")]  # fmt: skip


def test_perfect_times_hit_every_boundary_at_every_tolerance():
    counts = boundary_counts(REFERENCE, REFERENCE)
    assert (counts.reference, counts.scored) == (4, 4)
    assert counts.hits == {0.01: 4, 0.02: 4, 0.04: 4}
    assert counts.share(0.01) == counts.scored_share(0.01) == 1.0


def test_times_are_compared_with_the_matched_phones_not_the_nearest_boundary():
    """`s` recognised as `z`: its start is no hit even where it lies exactly, the boundary after
    it is scored with the start of the matched `aa`; an inserted phone's boundary, however close
    to a reference boundary, counts for nothing."""
    hypothesis = [
        TimedPhone("sil", 0.0, 0.1),
        TimedPhone("z", 0.1, 0.262),  # substitution: the boundary at 0.10 has matched sil
        TimedPhone("aa", 0.262, 0.395),  # 12 ms late at 0.25
        TimedPhone("ih", 0.395, 0.41),  # inserted, 5 ms from 0.40
        TimedPhone("t", 0.41, 0.55),  # 10 ms late at 0.40, 30 ms late at 0.52
        TimedPhone("sil", 0.55, 0.70),
    ]
    assert matched_phones([s[2] for s in REFERENCE], [p.phone for p in hypothesis]) == {
        0: 0, 2: 2, 3: 4, 4: 5,
    }  # fmt: skip
    counts = boundary_counts(REFERENCE, hypothesis)
    # 0.10 from sil's end (0 ms), 0.25 from aa's start (12), 0.40 from t's start (10), 0.52 (30)
    assert counts.scored == 4 and counts.hits == {0.01: 2, 0.02: 3, 0.04: 4}


def test_a_boundary_without_a_matched_phone_beside_it_is_missed_not_scored():
    hypothesis = [(0.0, 0.1, "sil"), (0.1, 0.25, "f"), (0.25, 0.40, "ae"), (0.40, 0.7, "sil")]
    counts = boundary_counts(REFERENCE, hypothesis)
    # 0.10 (sil's end) and 0.52 (sil's start, 120 ms away) are scored, 0.25 has no matched
    # phone on either side; 0.40 has t's deleted, aa substituted: nothing either
    assert (counts.reference, counts.scored) == (4, 2)
    assert counts.hits[0.04] == 1
    assert counts.share(0.04) == 0.25 and counts.scored_share(0.04) == 0.5


def test_counts_add_up_over_utterances():
    total = boundary_counts(REFERENCE, REFERENCE) + boundary_counts(REFERENCE[:2], [])
    assert (total.reference, total.scored, total.utterances) == (5, 4, 2)
    assert total.share(0.02) == pytest.approx(0.8)
    assert math.isnan(BoundaryCounts().share(0.02))
    assert boundary_counts([], []).reference == 0


def test_a_split_is_measured_against_the_per_reference(tiny_corpus, tmp_path):
    """The reference phones are the PER reference (39 set, q deleted), contiguous over the
    utterance; the error counts are those of the recogniser's own phones."""
    utterances = read_timit(tiny_corpus)["dev"][:3]
    for utterance in utterances:
        reference = reference_phones(utterance)
        assert [p.phone for p in reference] == map_phones(utterance.phones, 39)
        assert reference[0].start == utterance.segments[0][0] / 16000
        assert all(a.end == b.start for a, b in itertools.pairwise(reference))
    recognizer = Recognizer.from_checkpoint(save_checkpoint(build("ctc"), tmp_path / "c.ckpt"))
    result = measure_split(recognizer, utterances, batch_size=2)
    hypotheses = [recognizer.transcribe(u.wav) for u in utterances]
    expected = sum(
        (count_errors(map_phones(u.phones, 39), [p.phone for p in h]).errors
         for u, h in zip(utterances, hypotheses, strict=True)),
        0,
    )  # fmt: skip
    assert result["errors"].errors == expected
    assert result["matched"].reference == sum(len(reference_phones(u)) - 1 for u in utterances)
    assert result["matched"].utterances == 3
