"""Unit tests of the framewise toolkit: frame targets, phone-loop Viterbi, alignments, CTM."""

import itertools
import math
import os

import pytest
import torch

from recipes.toolkit.data.segments import frame_labels, frames_to_segments
from recipes.toolkit.framewise.alignment import (
    boundaries,
    boundary_accuracy,
    matched_boundaries,
    read_ctm,
    write_ctm,
)
from recipes.toolkit.framewise.viterbi import PhoneLoop

# ---------------------------------------------------------------------------------------------
# Frame targets

LABELS = {"sil": 0, "aa": 1, "b": 2}
# A gap between 1800 and 2000; frames of 400 samples every 160: centre of frame t = 160 t + 200.
SEGMENTS = [(0, 1000, "sil"), (1000, 1800, "aa"), (2000, 2600, "b")]


def test_frame_labels_centre_sample_rule():
    labels = frame_labels(SEGMENTS, 17, frame_length=400, frame_shift=160, label_index=LABELS)
    # centres:  200 360 520 680 840 | 1000 ... 1640 | 1800 1960 (gap) | 2120 2280 2440 | 2600 2760
    expected = [0] * 5 + [1] * 5 + [2] * 2 + [2] * 3 + [2] * 2
    assert labels.dtype == torch.long
    assert labels.tolist() == expected
    # Frame 4 covers [640, 1040), straddling the boundary at 1000, but its centre (840) is "sil";
    # frame 5 covers [800, 1200) and its centre sits exactly on the start of "aa" (inclusive).
    assert labels[4].item() == 0 and labels[5].item() == 1
    # Frame 9 (centre 1640) is still "aa"; frame 10's centre 1800 is the exclusive end of "aa".
    assert labels[9].item() == 1 and labels[10].item() == 2


def test_frame_labels_before_first_and_after_last_segment():
    segments = [(500, 900, "aa"), (900, 1200, "b")]
    labels = frame_labels(segments, 10, frame_length=200, frame_shift=200, label_index=LABELS)
    # centres: 100 300 | 500 700 | 900 1100 | 1300 1500 1700 1900
    assert labels.tolist() == [1, 1, 1, 1, 2, 2, 2, 2, 2, 2]


def test_frame_labels_matches_a_per_frame_search():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        cuts = torch.randint(0, 3000, (6,), generator=generator).unique().tolist()
        segments, names = [], list(LABELS)
        for index, (start, end) in enumerate(itertools.pairwise(cuts)):
            if index % 3 == 2:
                continue  # leave a gap
            segments.append((start, end, names[index % 3]))
        if not segments:
            continue
        labels = frame_labels(segments, 25, 400, 160, LABELS).tolist()
        for t, label in enumerate(labels):
            centre = 160 * t + 200
            following = [seg for seg in segments if seg[1] > centre]
            expected = following[0][2] if following else segments[-1][2]
            assert label == LABELS[expected], (segments, t)


def test_frame_labels_unknown_label_is_named():
    with pytest.raises(ValueError, match="unknown label 'zh'"):
        frame_labels([(0, 100, "sil"), (100, 300, "zh")], 2, 100, 100, LABELS)


def test_frame_labels_rejects_overlapping_segments():
    with pytest.raises(ValueError, match="overlap"):
        frame_labels([(0, 200, "sil"), (100, 300, "aa")], 2, 100, 100, LABELS)


def test_frame_labels_zero_frames():
    assert frame_labels(SEGMENTS, 0, 400, 160, LABELS).tolist() == []


def test_frames_to_segments_round_trip():
    labels = frame_labels(SEGMENTS, 17, 400, 160, LABELS).tolist()
    segments = frames_to_segments(labels)
    assert segments == [(0, 5, 0), (5, 10, 1), (10, 17, 2)]
    rebuilt = [label for start, end, label in segments for _ in range(start, end)]
    assert rebuilt == labels
    for labels in ([], [3], [1, 1, 2, 1, 1, 1, 0]):
        segments = frames_to_segments(labels)
        assert [label for start, end, label in segments for _ in range(start, end)] == labels
        assert all(a[2] != b[2] for a, b in itertools.pairwise(segments))


# ---------------------------------------------------------------------------------------------
# Phone-loop Viterbi against brute force


def reference_transitions(log_bigram, self_loop_prob):
    """The loop's transition probabilities, written out element by element."""
    n = len(log_bigram)
    probabilities = [[0.0] * n for _ in range(n)]
    for i in range(n):
        leave = sum(math.exp(log_bigram[i][k]) for k in range(n) if k != i)
        for j in range(n):
            if i == j:
                probabilities[i][j] = self_loop_prob
            else:
                probabilities[i][j] = (1 - self_loop_prob) * math.exp(log_bigram[i][j]) / leave
    return probabilities


def brute_force(log_posteriors, log_bigram, log_initial, self_loop_prob, scale, log_prior):
    """Best path and its score by enumerating every state sequence."""
    frames, n = len(log_posteriors), len(log_initial)
    transitions = reference_transitions(log_bigram, self_loop_prob)
    prior = log_prior if log_prior is not None else [0.0] * n
    best_score, best_path = -math.inf, None
    for path in itertools.product(range(n), repeat=frames):
        score = log_initial[path[0]]
        score += sum(scale * (log_posteriors[t][s] - prior[s]) for t, s in enumerate(path))
        score += sum(math.log(transitions[a][b]) for a, b in itertools.pairwise(path))
        if score > best_score:
            best_score, best_path = score, list(path)
    return best_path, best_score


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "self_loop_prob, scale, with_prior",
    [(0.5, 1.0, False), (0.7, 0.6, True), (0.2, 2.0, True), (0.9, 1.0, True)],
)
def test_viterbi_matches_brute_force(seed, self_loop_prob, scale, with_prior):
    generator = torch.Generator().manual_seed(seed)
    n, frames = 3, 5
    log_posteriors = torch.randn(frames, n, generator=generator).mul(2).log_softmax(dim=1)
    log_bigram = torch.randn(n, n, generator=generator)  # unnormalised, diagonal ignored
    log_initial = torch.randn(n, generator=generator).log_softmax(dim=0)
    log_prior = torch.randn(n, generator=generator).log_softmax(dim=0) if with_prior else None
    loop = PhoneLoop(log_bigram, log_initial, self_loop_prob, scale, log_prior)

    path = loop.decode(log_posteriors)
    expected_path, expected_score = brute_force(
        log_posteriors.double().tolist(),
        log_bigram.double().tolist(),
        log_initial.double().tolist(),
        self_loop_prob,
        scale,
        None if log_prior is None else log_prior.double().tolist(),
    )
    assert path == expected_path
    assert loop.path_score(path, log_posteriors) == pytest.approx(expected_score, abs=1e-9)


def test_viterbi_matches_brute_force_with_four_labels():
    generator = torch.Generator().manual_seed(11)
    for _ in range(5):
        log_posteriors = torch.randn(4, 4, generator=generator).log_softmax(dim=1)
        log_bigram = torch.randn(4, 4, generator=generator)
        log_initial = torch.randn(4, generator=generator).log_softmax(dim=0)
        loop = PhoneLoop(log_bigram, log_initial, self_loop_prob=0.6, acoustic_scale=0.8)
        expected_path, _ = brute_force(
            log_posteriors.double().tolist(),
            log_bigram.double().tolist(),
            log_initial.double().tolist(),
            0.6,
            0.8,
            None,
        )
        assert loop.decode(log_posteriors) == expected_path


def test_prior_division_changes_the_decision():
    # Label 0 has the larger posterior everywhere, but its prior is much larger still.
    log_posteriors = torch.tensor([[0.6, 0.4]] * 4).log()
    uniform = torch.tensor([0.5, 0.5]).log()
    plain = PhoneLoop(torch.zeros(2, 2), uniform)
    divided = PhoneLoop(torch.zeros(2, 2), uniform, log_prior=torch.tensor([0.9, 0.1]).log())
    assert plain.decode(log_posteriors) == [0, 0, 0, 0]
    assert divided.decode(log_posteriors) == [1, 1, 1, 1]


def test_self_loop_near_one_keeps_one_phone():
    # Frames alternate between favouring label 0 and label 2 in blocks of three.
    block = [[0.7, 0.1, 0.2]] * 3 + [[0.2, 0.1, 0.7]] * 3
    log_posteriors = torch.tensor(block * 2).log()
    log_initial = torch.full((3,), 1 / 3).log()
    loose = PhoneLoop(torch.zeros(3, 3), log_initial, self_loop_prob=0.5)
    sticky = PhoneLoop(torch.zeros(3, 3), log_initial, self_loop_prob=1 - 1e-9)
    assert loose.decode_phones(log_posteriors) == [0, 2, 0, 2]
    assert sticky.decode_phones(log_posteriors) == [0]
    assert sticky.decode(log_posteriors) == [0] * 12


def test_ties_go_to_the_lowest_index():
    loop = PhoneLoop(torch.zeros(3, 3), torch.zeros(3), self_loop_prob=0.5)
    assert loop.decode(torch.zeros(4, 3)) == [0, 0, 0, 0]


def test_decode_edge_cases():
    loop = PhoneLoop(torch.zeros(2, 2), torch.zeros(2))
    assert loop.decode(torch.zeros(0, 2)) == []
    single = PhoneLoop(torch.zeros(1, 1), torch.zeros(1))
    assert single.decode(torch.zeros(3, 1)) == [0, 0, 0]
    with pytest.raises(ValueError, match=r"\[T, 2\]"):
        loop.decode(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="NaN"):
        loop.decode(torch.tensor([[0.0, math.nan]]))


def test_transition_rows_sum_to_one():
    loop = PhoneLoop(torch.randn(4, 4), torch.zeros(4), self_loop_prob=0.3)
    rows = loop.log_transitions.exp().sum(dim=1)
    assert torch.allclose(rows, torch.ones(4, dtype=rows.dtype))
    assert torch.allclose(loop.log_transitions.diagonal().exp(), torch.full((4,), 0.3).double())


# ---------------------------------------------------------------------------------------------
# Bigram estimation


def test_bigram_estimation_from_hand_counted_sequences():
    sequences = [[0, 0, 1, 1, 2], [1, 2, 2, 0], [2], [], [0, 1]]
    # Transitions between distinct labels: 0->1 twice, 1->2 twice, 2->0 once.
    # First labels: 0, 1, 2, 0 (the empty sequence is skipped).
    loop = PhoneLoop.from_label_sequences(sequences, num_labels=3, smoothing=1.0)
    transitions = loop.log_transitions.exp()
    leave = 0.5  # default self-loop probability
    expected_bigram = [
        [None, 3 / 4, 1 / 4],  # 0->1: 2+1, 0->2: 0+1
        [1 / 4, None, 3 / 4],  # 1->0: 0+1, 1->2: 2+1
        [2 / 3, 1 / 3, None],  # 2->0: 1+1, 2->1: 0+1
    ]
    for i, row in enumerate(expected_bigram):
        for j, probability in enumerate(row):
            expected = 0.5 if i == j else leave * probability
            assert transitions[i, j].item() == pytest.approx(expected)
    assert loop.log_initial.exp().tolist() == pytest.approx([3 / 7, 2 / 7, 2 / 7])


def test_bigram_estimation_without_smoothing():
    loop = PhoneLoop.from_label_sequences([[0, 0, 1, 1, 2], [1, 2, 2, 0]], 3, smoothing=0.0)
    transitions = loop.log_transitions.exp()
    assert transitions[0].tolist() == pytest.approx([0.5, 0.5, 0.0])  # only 0->1 seen
    assert transitions[1].tolist() == pytest.approx([0.0, 0.5, 0.5])
    assert transitions[2].tolist() == pytest.approx([0.5, 0.0, 0.5])
    assert loop.log_initial.exp().tolist() == pytest.approx([0.5, 0.5, 0.0])


def test_bigram_estimation_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="out of range"):
        PhoneLoop.from_label_sequences([[0, 3]], num_labels=3)


# ---------------------------------------------------------------------------------------------
# Boundaries and boundary accuracy


def test_boundaries_are_internal_starts():
    assert boundaries([(0.0, 0.1, "a"), (0.1, 0.25, "b"), (0.25, 0.4, "a")]) == [0.1, 0.25]
    assert boundaries([(0, 4, 1)]) == []
    assert boundaries([]) == []


def test_boundary_accuracy_hand_computed():
    reference = [0.10, 0.30, 0.50, 0.70]
    hypothesis = [0.105, 0.285, 0.54, 0.90]
    # 0.10: off by 5 ms; 0.30: 15 ms; 0.50: exactly 40 ms (inclusive); 0.70: 200 ms, never.
    assert boundary_accuracy(reference, hypothesis) == pytest.approx(
        {0.010: 0.25, 0.020: 0.50, 0.040: 0.75}
    )


def test_one_hypothesis_boundary_matches_one_reference_boundary():
    # A single hypothesis boundary between two reference boundaries counts for only one.
    assert boundary_accuracy([0.10, 0.12], [0.11], tolerances=(0.02,)) == {0.02: 0.5}
    # The earlier reference takes its nearest hypothesis; the later one takes the remaining one.
    assert matched_boundaries([0.10, 0.12], [0.095, 0.11], tolerance=0.02) == 2
    # Greedy in time order: 0.10 takes 0.11 (nearer than 0.08), so 0.13 is left unmatched.
    assert matched_boundaries([0.10, 0.13], [0.08, 0.11], tolerance=0.02) == 1
    # Reference and hypothesis order do not matter.
    assert matched_boundaries([0.13, 0.10], [0.11, 0.08], tolerance=0.02) == 1


def test_boundary_accuracy_without_reference_boundaries_is_nan():
    result = boundary_accuracy([], [0.1], tolerances=(0.01, 0.02))
    assert list(result) == [0.01, 0.02]
    assert all(math.isnan(value) for value in result.values())


# ---------------------------------------------------------------------------------------------
# CTM files


def test_ctm_round_trip_and_no_temporary_file(tmp_path):
    records = [
        ("utt_a", 0.0, 0.1234, "sil"),
        ("utt_a", 0.1234, 0.05, "aa"),
        ("utt_b", 1.5, 0.2, "b"),
    ]
    path = tmp_path / "phones.ctm"
    write_ctm(path, records)
    assert path.read_text().splitlines() == [
        "utt_a 1 0.000 0.123 sil",
        "utt_a 1 0.123 0.050 aa",
        "utt_b 1 1.500 0.200 b",
    ]
    back = read_ctm(path)
    assert [(utt, phone) for utt, _, _, phone in back] == [(u, p) for u, _, _, p in records]
    for (_, start, duration, _), (_, start0, duration0, _) in zip(back, records, strict=True):
        assert start == pytest.approx(start0, abs=5e-4)
        assert duration == pytest.approx(duration0, abs=5e-4)
    assert os.listdir(tmp_path) == ["phones.ctm"]


def test_ctm_failure_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "phones.ctm"
    write_ctm(path, [("u", 0.0, 0.1, "a")])

    def failing_records():
        yield ("u", 0.0, 0.2, "b")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_ctm(path, failing_records())
    with pytest.raises(ValueError, match="whitespace"):
        write_ctm(path, [("u", 0.0, 0.1, "a b")])
    assert read_ctm(path) == [("u", 0.0, 0.1, "a")]
    assert os.listdir(tmp_path) == ["phones.ctm"]


def test_read_ctm_rejects_malformed_lines(tmp_path):
    path = tmp_path / "bad.ctm"
    path.write_text(";; comment\n\nu 1 0.000 0.100 a\nu 1 0.100\n")
    with pytest.raises(ValueError, match="bad.ctm:4"):
        read_ctm(path)


# ---------------------------------------------------------------------------------------------
# Batched decoding and forced alignment


def test_batched_viterbi_equals_one_utterance_at_a_time_and_ignores_padding():
    generator = torch.Generator().manual_seed(5)
    n, frames = 5, 9
    loop = PhoneLoop(
        torch.randn(n, n, generator=generator),
        torch.randn(n, generator=generator).log_softmax(0),
        self_loop_prob=0.6,
        log_prior=torch.randn(n, generator=generator).log_softmax(0),
    )
    lengths = torch.tensor([9, 4, 1, 7])
    batch = torch.randn(len(lengths), frames, n, generator=generator).log_softmax(-1)
    paths = loop.decode_batch(batch, lengths)
    garbage = batch.clone()
    for b, length in enumerate(lengths):
        garbage[b, length:] = torch.randn(frames - length, n, generator=generator) * 50
    assert loop.decode_batch(garbage, lengths) == paths
    for b, length in enumerate(lengths):
        assert paths[b] == loop.decode(batch[b, :length])
        assert len(paths[b]) == length


def brute_force_alignment(scores, phones, self_loop_prob):
    """Best monotone path through ``phones`` (each at least one frame), by enumeration."""
    frames, count = len(scores), len(phones)
    best_score, best_path = -math.inf, None
    for cuts in itertools.combinations(range(1, frames), count - 1):
        starts = [0, *cuts]
        path = []
        for k, start in enumerate(starts):
            end = starts[k + 1] if k + 1 < count else frames
            path += [phones[k]] * (end - start)
        score = sum(scores[t][s] for t, s in enumerate(path))
        advances = count - 1
        score += advances * math.log(1 - self_loop_prob)
        score += (frames - 1 - advances) * math.log(self_loop_prob)
        if score > best_score:
            best_score, best_path = score, path
    return best_path


@pytest.mark.parametrize("seed", range(8))
def test_forced_alignment_matches_brute_force(seed):
    generator = torch.Generator().manual_seed(seed)
    n, frames = 4, 7
    phones = [int(p) for p in torch.randint(0, n, (3,), generator=generator)]
    phones = [p for k, p in enumerate(phones) if k == 0 or p != phones[k - 1]]
    log_posteriors = torch.randn(frames, n, generator=generator).mul(2).log_softmax(dim=1)
    log_prior = torch.randn(n, generator=generator).log_softmax(dim=0)
    loop = PhoneLoop(torch.zeros(n, n), torch.zeros(n), 0.7, 0.9, log_prior)
    scores = loop.acoustic_scores(log_posteriors).tolist()
    assert loop.align(log_posteriors, phones) == brute_force_alignment(scores, phones, 0.7)
    assert collapse_path(loop.align(log_posteriors, phones)) == phones


def collapse_path(path):
    return [p for t, p in enumerate(path) if t == 0 or p != path[t - 1]]


def test_forced_alignment_needs_a_frame_per_phone():
    loop = PhoneLoop(torch.zeros(3, 3), torch.zeros(3))
    with pytest.raises(ValueError, match="cannot align 3 phones to 2 frames"):
        loop.align(torch.zeros(2, 3), [0, 1, 2])
    assert loop.align(torch.zeros(3, 3), [2, 0, 1]) == [2, 0, 1]
