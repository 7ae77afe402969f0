"""Timed phones: where each decoded phone starts and ends.

Frame segments are ``(start_frame, end_frame, label)`` with the end exclusive, turned into
seconds by the frame-grid rule of :mod:`recipes.toolkit.data.segments` (a boundary sits midway
between the centres of the frames on either side; the first segment may start at 0, the last
ends at the end of the last frame when it reaches it).

A CTC path is segmented by its emissions (:func:`ctc_segments`): a phone starts at the first
frame of its run of non-blank frames, and the blank frames after a run belong to the phone
before them, so a phone ends where the next one starts; the last phone ends with its final
non-blank frame; the blank frames before the first emission belong to no phone.

>>> ctc_segments([0, 0, 3, 3, 0, 5, 0, 5, 0, 0])
[(2, 5, 3), (5, 7, 5), (7, 8, 5)]
>>> map_segments([TimedPhone("q", 0.0, 0.1), TimedPhone("ix", 0.1, 0.2)], {"q": "", "ix": "ih"})
[TimedPhone(phone='ih', start=0.0, end=0.2)]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from recipes.toolkit.data.segments import frame_segments_to_seconds

BLANK = 0


@dataclass(frozen=True)
class TimedPhone:
    """One recognised phone and its time span in seconds from the start of the audio.

    >>> TimedPhone("aa", 0.115, 0.205).duration
    0.09
    """

    phone: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return round(self.end - self.start, 9)


def ctc_segments(path: Sequence[int], blank: int = BLANK) -> list[tuple[int, int, int]]:
    """Frame segments ``(start, end, label)`` of the phones of a CTC frame path (see the module
    docstring): one per run of equal non-blank labels, as CTC's collapse reads them."""
    starts = [
        (t, int(label))
        for t, label in enumerate(path)
        if label != blank and (t == 0 or path[t - 1] != label)
    ]
    if not starts:
        return []
    last_emission = max(t for t, label in enumerate(path) if label != blank)
    ends = [t for t, _ in starts[1:]] + [last_emission + 1]
    return [(t, end, label) for (t, label), end in zip(starts, ends, strict=True)]


def ctc_align(log_probs: torch.Tensor, labels: Sequence[int], blank: int = BLANK) -> list[int]:
    """The most probable CTC frame path ``[T]`` of ``log_probs [T, V]`` that collapses to
    ``labels`` (CTC forced alignment, Viterbi over the labels with blanks between them).

    ``labels`` need at least one frame each plus one between equal neighbours. Ties go to
    staying in a state (then to coming from the state before it), and at the last frame to
    the final blank.

    >>> lp = torch.tensor([[.6, .3, .1], [.3, .6, .1], [.1, .1, .8], [.5, .4, .1]]).log()
    >>> ctc_align(lp, [1, 2])
    [0, 1, 2, 0]
    """
    scores = log_probs.detach().double().cpu()
    num_frames = scores.shape[0]
    if not labels:
        return [blank] * num_frames
    states = [blank]
    for label in labels:
        states += [int(label), blank]
    symbols = torch.tensor(states)
    emissions = scores[:, symbols]  # [T, S]
    count = len(states)
    # a state may skip the blank before it when it holds a label unlike the one two back
    skip = torch.zeros(count, dtype=torch.bool)
    for s in range(2, count):
        skip[s] = states[s] != blank and states[s] != states[s - 2]
    neg_inf = torch.tensor(-math.inf, dtype=torch.float64)
    best = torch.full((count,), -math.inf, dtype=torch.float64)
    best[:2] = emissions[0, :2]
    moves = torch.zeros(num_frames, count, dtype=torch.long)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, num_frames):
        previous = torch.cat([neg_inf[None], best[:-1]])
        skipped = torch.where(skip, torch.cat([neg_inf.repeat(2), best[:-2]]), neg_inf)
        candidates = torch.stack([best, previous, skipped])  # argmax keeps the first maximum
        moves[t] = candidates.argmax(dim=0)
        best = candidates.max(dim=0).values + emissions[t]
    final = count - 1 if best[-1] >= best[-2] else count - 2
    if not math.isfinite(float(best[final])):
        raise ValueError(f"{len(labels)} labels cannot be aligned to {num_frames} frames")
    path, state = [], final
    for t in range(num_frames - 1, -1, -1):
        path.append(states[state])
        state -= int(moves[t, state])
    path.reverse()
    return path


def to_seconds(
    segments: Sequence[tuple[int, int, str]],
    num_frames: int,
    frame_length: int,
    frame_shift: int,
    sample_rate: int,
) -> list[TimedPhone]:
    """Frame segments with phone labels -> :class:`TimedPhone`, by
    :func:`~recipes.toolkit.data.segments.frame_segments_to_seconds`.

    >>> to_seconds([(0, 4, "a"), (4, 8, "b")], 8, 400, 160, 16000)[1]
    TimedPhone(phone='b', start=0.0475, end=0.095)
    """
    timed = frame_segments_to_seconds(segments, num_frames, frame_length, frame_shift, sample_rate)
    return [TimedPhone(str(label), start, end) for start, end, label in timed]


def map_segments(
    phones: Sequence[TimedPhone], score_map: Mapping[str, str] | None
) -> list[TimedPhone]:
    """Timed phones mapped to the scoring set as the scorer maps labels (``""`` deletes one,
    equal neighbours stay apart): a deleted phone's time goes to the phone after it, or to the
    one before it when it is the last. ``None`` keeps them as they are.

    >>> map_segments([TimedPhone("a", 0, 1), TimedPhone("q", 1, 2)], {"a": "a", "q": ""})
    [TimedPhone(phone='a', start=0, end=2)]
    """
    if score_map is None:
        return list(phones)
    mapped: list[TimedPhone] = []
    pending_start = None
    for phone in phones:
        if phone.phone not in score_map:
            raise KeyError(f"label {phone.phone!r} is not in the score map (the model's score_map)")
        label = score_map[phone.phone]
        if not label:
            pending_start = phone.start if pending_start is None else pending_start
            continue
        start = phone.start if pending_start is None else pending_start
        mapped.append(TimedPhone(label, start, phone.end))
        pending_start = None
    if pending_start is not None and mapped:
        mapped[-1] = TimedPhone(mapped[-1].phone, mapped[-1].start, phones[-1].end)
    return mapped
