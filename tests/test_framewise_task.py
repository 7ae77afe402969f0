"""The framewise task's data and module, without training: frame targets, batches, phone loop."""

import math

import pytest
import torch

from recipes.timit.data import label_maps
from recipes.toolkit.data.prepared import PreparedSplit
from recipes.toolkit.data.segments import frame_segments, relabel_segments
from recipes.toolkit.framewise.data import IGNORE_INDEX, FramewiseDataset, collate_frames
from recipes.toolkit.framewise.module import FramewiseRecognizer

# Two utterances in TIMIT's 61 symbols, frame segments (start, end, phone): "q" is deleted in the
# 48 set (its frames go to the phone after it), "h#" and "pau" both become "sil" and merge.
SEGMENTS = [
    [(0, 3, "h#"), (3, 5, "pau"), (5, 6, "q"), (6, 9, "aa"), (9, 11, "h#")],
    [(0, 2, "h#"), (2, 4, "ix"), (4, 5, "q")],
]
TIMES = [[(a / 100, b / 100, p) for a, b, p in u] for u in SEGMENTS]


def split_of(segments, times):
    frames = [s[-1][1] for s in segments]
    return PreparedSplit(
        utt_ids=["u1", "u2"],
        speakers=["s1", "s2"],
        feats=[torch.zeros(n, 3) for n in frames],
        phones=[[p for _, _, p in s if p != "q"] for s in segments],
        segments=segments,
        times=times,
    )


def test_frame_targets_follow_the_segments_in_the_training_set():
    maps = label_maps(48, 39)
    dataset = FramewiseDataset(split_of(SEGMENTS, TIMES), maps)
    index = {p: i for i, p in enumerate(maps.labels)}
    sil, aa, ix = index["sil"], index["aa"], index["ix"]
    assert dataset.frame_targets(0).tolist() == [sil] * 5 + [aa] * 4 + [sil] * 2
    assert dataset.frame_targets(1).tolist() == [sil] * 2 + [ix] * 3  # trailing q: to "ix"
    assert dataset.reference_segments(0) == [(0.0, 0.05, "sil"), (0.05, 0.09, "aa"),
                                             (0.09, 0.11, "sil")]  # fmt: skip
    batch = collate_frames([dataset[0], dataset[1]])
    assert batch["frame_targets"].shape == (2, 11)
    assert batch["frame_targets"][1, 5:].tolist() == [IGNORE_INDEX] * 6
    assert batch["reference_segments"][1] == [(0.0, 0.02, "sil"), (0.02, 0.05, "ix")]


def test_a_split_without_times_has_no_reference_segments():
    dataset = FramewiseDataset(split_of(SEGMENTS, None), label_maps(48, 39))
    assert dataset.reference_segments(0) is None
    assert dataset[1]["reference_segments"] is None


def test_relabel_merges_and_absorbs_deleted_labels():
    keep = {"q": None}.get
    assert relabel_segments([(0, 2, "q"), (2, 3, "a")], lambda p: keep(p, p)) == [(0, 3, "a")]
    assert relabel_segments([(0, 2, "a"), (2, 3, "q")], lambda p: keep(p, p)) == [(0, 3, "a")]
    assert relabel_segments([(0, 2, "q")], lambda p: keep(p, p)) == []


def test_frame_segments_cover_every_frame_by_the_centre_rule():
    # frames of 400 samples every 160: centres 200, 360, 520, 680, 840
    segments = [(0, 361, "a"), (361, 700, "b"), (700, 2000, "c")]
    assert frame_segments(segments, 5, 400, 160) == [(0, 2, "a"), (2, 4, "b"), (4, 5, "c")]


def test_phone_loop_is_estimated_from_the_training_labels():
    module = FramewiseRecognizer(["a", "b", "c"], 3, {"name": "gru", "hidden_size": 4})
    module.set_phone_loop([[0, 0, 1], [0, 2], [1]], torch.tensor([6.0, 3.0, 0.0]))
    # add-one smoothed: initial counts a=2, b=1, c=0 -> (3, 2, 1) / 6
    assert module.log_initial.exp().tolist() == pytest.approx([0.5, 2 / 6, 1 / 6])
    # row a: a->b once, a->c once -> (2, 2) / 4; row b: none -> uniform
    bigram = module.log_bigram.exp()
    assert bigram[0, 1:].tolist() == pytest.approx([0.5, 0.5])
    assert bigram[1, [0, 2]].tolist() == pytest.approx([0.5, 0.5])
    assert math.isinf(module.log_bigram[0, 0])
    assert module.log_prior.exp().tolist() == pytest.approx([7 / 12, 4 / 12, 1 / 12])


def test_viterbi_and_greedy_decoding_of_a_framewise_module():
    module = FramewiseRecognizer(
        ["a", "b"], 3, {"name": "gru", "hidden_size": 4},
        decoding={"method": "viterbi", "self_loop_prob": 0.9, "prior_scale": 0.0},
    )  # fmt: skip
    module.set_phone_loop([[0, 1]], torch.tensor([1.0, 1.0]))
    flicker = torch.tensor([[0.9, 0.1], [0.45, 0.55], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]]).log()
    lengths = torch.tensor([5])
    assert module.decode(flicker[None], lengths, "greedy") == [["a", "b", "a", "b"]]
    assert module.decode(flicker[None], lengths) == [["a", "b"]]  # the loop smooths the flicker
