"""Scoring, decoding and scheduling pieces of the recipe, checked against hand-made cases."""

import itertools
import math

import pytest
import torch

from recipes.toolkit.ctc.decoding import BigramLM, greedy_decode, prefix_beam_search
from recipes.toolkit.evaluation.scoring import PhoneErrorRate, align, count_errors
from recipes.toolkit.schedulers import NewBob


def test_error_counts_are_minimal_edits():
    counts = count_errors(list("abcdef"), list("abxdefg"))
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, 0, 1)
    counts = count_errors(list("abc"), [])
    assert (counts.deletions, counts.per) == (3, 100.0)
    counts = count_errors([], list("ab"))
    assert counts.insertions == 2
    pairs = align(list("sil a b"), list("sil b"))
    assert [r for r, _ in pairs if r is not None] == list("sil a b")


def test_per_metric_sums_over_the_set_not_over_utterances():
    metric = PhoneErrorRate()
    metric.update([list("ab")], [list("xb")])  # 1 error / 2
    metric.update([list("abcdefgh")], [list("abcdefgh")])  # 0 / 8
    assert metric.compute().item() == pytest.approx(10.0)  # 1 / 10, not mean(50, 0)


def brute_force_best_labelling(log_probs: torch.Tensor) -> tuple[int, ...]:
    """Sum path probabilities of every alignment to find the most probable label sequence."""
    totals: dict[tuple[int, ...], float] = {}
    steps, vocab = log_probs.shape
    for path in itertools.product(range(vocab), repeat=steps):
        labels, previous = [], None
        for symbol in path:
            if symbol != previous and symbol != 0:
                labels.append(symbol)
            previous = symbol
        p = math.exp(sum(log_probs[t, s].item() for t, s in enumerate(path)))
        totals[tuple(labels)] = totals.get(tuple(labels), 0.0) + p
    return max(totals, key=totals.get)


def test_prefix_beam_search_finds_the_most_probable_labelling():
    torch.manual_seed(0)
    for _ in range(20):
        log_probs = torch.randn(5, 3).mul(1.5).log_softmax(-1)
        best = brute_force_best_labelling(log_probs)
        found = prefix_beam_search(log_probs[None], torch.tensor([5]), beam_width=16)[0]
        assert tuple(found) == best


def test_beam_search_can_beat_the_best_path():
    # The best single path is blank-blank (empty), but "1" collects more mass over its paths.
    probs = torch.tensor([[0.6, 0.4], [0.6, 0.4]])
    log_probs = probs.log()[None]
    assert greedy_decode(log_probs, torch.tensor([2])) == [[]]
    assert prefix_beam_search(log_probs, torch.tensor([2]), beam_width=4) == [[1]]


def test_bigram_weight_changes_the_decision_towards_likely_sequences():
    lm = BigramLM.estimate([[1, 2]] * 50 + [[1, 3]], vocab_size=4)
    # Frame 2 is ambiguous between 2 and 3 acoustically (3 slightly ahead).
    log_probs = torch.tensor([[0.05, 0.9, 0.025, 0.025], [0.1, 0.0, 0.44, 0.46]]).clamp_min(1e-6)
    log_probs = log_probs.log()[None]
    lengths = torch.tensor([2])
    assert prefix_beam_search(log_probs, lengths, beam_width=4) == [[1, 3]]
    assert prefix_beam_search(log_probs, lengths, beam_width=4, lm=lm, lm_weight=1.0) == [[1, 2]]


def test_greedy_respects_lengths():
    log_probs = torch.full((1, 4, 3), -10.0)
    log_probs[0, :, 1] = 0.0
    log_probs[0, 2:, 2] = 1.0
    assert greedy_decode(log_probs, torch.tensor([2])) == [[1]]
    assert greedy_decode(log_probs, torch.tensor([4])) == [[1, 2]]


def test_newbob_holds_then_anneals_after_patience():
    newbob = NewBob(factor=0.5, threshold=0.01, patience=1, hold_epochs=2)
    lrs = [newbob.step(per, lr=1.0) for per in (90, 90, 90, 90, 50, 50, 50)]
    assert lrs == [1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 0.5]
    restored = NewBob(factor=0.5, threshold=0.01, patience=1, hold_epochs=2)
    restored.load_state_dict(newbob.state_dict())
    assert restored.step(50, 1.0) == newbob.step(50, 1.0)
