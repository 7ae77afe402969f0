"""Time-aligned label segments on the frame grid: frame labels, frame segments, and back to time.

A segment is ``(start, end, label)`` with the end exclusive, in samples unless said otherwise.
Frame ``t`` covers samples ``[t * frame_shift, t * frame_shift + frame_length)`` and takes the
label of the segment that contains its centre sample ``t * frame_shift + frame_length // 2``:
one rule for the framewise task's targets, the plots' reference segments and the alignments.

Example:
    >>> segments = [(0, 300, "a"), (300, 700, "b")]
    >>> labels = frame_labels(segments, 6, 200, 100, {"a": 0, "b": 1})
    >>> labels.tolist()
    [0, 0, 1, 1, 1, 1]
    >>> frames_to_segments(labels.tolist())
    [(0, 2, 0), (2, 6, 1)]
"""

from collections.abc import Callable, Hashable, Mapping, Sequence

import torch

Segment = tuple[int, int, Hashable]


def frame_centres(num_frames: int, frame_length: int, frame_shift: int) -> torch.Tensor:
    """Centre sample of each frame, ``t * frame_shift + frame_length // 2``, as a LongTensor.

    >>> frame_centres(4, 400, 160).tolist()
    [200, 360, 520, 680]
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if frame_length <= 0 or frame_shift <= 0:
        raise ValueError(
            f"frame_length and frame_shift must be > 0, got {frame_length} and {frame_shift}"
        )
    return torch.arange(num_frames, dtype=torch.long) * frame_shift + frame_length // 2


def _check_segments(segments: Sequence[Segment]) -> None:
    """Raise ``ValueError`` unless segments are non-empty and in order without overlap."""
    previous_end = None
    for index, (start, end, label) in enumerate(segments):
        if not start < end:
            raise ValueError(f"segment {index} ({start}, {end}, {label!r}) must have start < end")
        if previous_end is not None and start < previous_end:
            raise ValueError(
                f"segment {index} ({start}, {end}, {label!r}) starts before the previous one ends"
                f" ({previous_end}); segments must be sorted and must not overlap"
            )
        previous_end = end


def frame_labels(
    segments: Sequence[Segment],
    num_frames: int,
    frame_length: int,
    frame_shift: int,
    label_index: Mapping[Hashable, int],
) -> torch.Tensor:
    """Label index of every frame, by the segment containing the frame's centre sample.

    ``segments`` must be sorted and must not overlap. A centre before the first segment takes
    the first segment's label, one at or after the last segment's end takes the last's, and one
    in a gap between two segments takes the label of the following segment. Every segment label
    must be a key of ``label_index``; an unknown one raises ``ValueError`` naming it.

    Returns a LongTensor of shape ``[num_frames]``.

    >>> segments = [(100, 500, "x"), (600, 900, "y")]
    >>> frame_labels(segments, 5, 200, 200, {"x": 3, "y": 7}).tolist()  # centres 100..900
    [3, 3, 7, 7, 7]
    """
    centres = frame_centres(num_frames, frame_length, frame_shift)
    if not segments:
        if num_frames == 0:
            return torch.zeros(0, dtype=torch.long)
        raise ValueError(f"no segments to label {num_frames} frames")
    _check_segments(segments)
    indices = []
    for _, _, label in segments:
        if label not in label_index:
            raise ValueError(f"unknown label {label!r}: not in label_index")
        indices.append(label_index[label])
    ends = torch.tensor([end for _, end, _ in segments], dtype=torch.long)
    # The first segment whose end lies beyond the centre: the containing segment, the following
    # one for a centre in a gap, the first one for a centre before it; clamp to the last one.
    which = torch.searchsorted(ends, centres, right=True).clamp(max=len(segments) - 1)
    return torch.tensor(indices, dtype=torch.long)[which]


def frames_to_segments(labels: Sequence[int]) -> list[tuple[int, int, int]]:
    """Run-length encode frame labels as ``(start_frame, end_frame, label)``, end exclusive.

    >>> frames_to_segments([4, 4, 4, 2, 4, 4])
    [(0, 3, 4), (3, 4, 2), (4, 6, 4)]
    >>> frames_to_segments([])
    []
    """
    segments: list[tuple[int, int, int]] = []
    start = 0
    for t in range(1, len(labels) + 1):
        if t == len(labels) or labels[t] != labels[start]:
            segments.append((start, t, int(labels[start])))
            start = t
    return segments


def frame_segments(
    segments: Sequence[Segment], num_frames: int, frame_length: int, frame_shift: int
) -> list[tuple[int, int, Hashable]]:
    """Sample segments -> frame segments ``(start_frame, end_frame, label)`` by the centre rule.

    Every frame is covered (see :func:`frame_labels` for frames outside the segments); a
    segment that holds no frame centre has no frame segment. Consecutive segments with the same
    label stay separate.

    >>> frame_segments([(0, 800, "h#"), (800, 1600, "s")], 8, 400, 160)
    [(0, 4, 'h#'), (4, 8, 's')]
    >>> frame_segments([(0, 500, "a"), (500, 520, "b"), (520, 900, "a")], 4, 400, 160)
    [(0, 2, 'a'), (2, 4, 'a')]
    """
    if num_frames == 0:
        return []
    positions = [(start, end, index) for index, (start, end, _) in enumerate(segments)]
    which = frame_labels(positions, num_frames, frame_length, frame_shift, _Identity())
    return [(a, b, segments[index][2]) for a, b, index in frames_to_segments(which.tolist())]


class _Identity(dict):
    """``label_index`` for integer labels that are their own index."""

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int)

    def __getitem__(self, key: int) -> int:
        return key


def relabel_segments(
    segments: Sequence[tuple[int | float, int | float, str]],
    to_label: Callable[[str], str | None],
) -> list[tuple[int | float, int | float, str]]:
    """Map each segment's label; merge consecutive equal labels; a segment whose label maps to
    ``None`` or ``""`` (deleted, such as a glottal stop ``q`` that a phone set drops) joins the
    segment after it (the last one joins the one before). Works in any time unit.

    >>> fold = {"q": None, "pau": "sil", "h#": "sil"}.get
    >>> relabel_segments([(0, 3, "h#"), (3, 5, "pau"), (5, 6, "q"), (6, 9, "aa")],
    ...                  lambda p: fold(p, p))
    [(0, 5, 'sil'), (5, 9, 'aa')]
    """
    kept: list[list] = []
    pending_start = None
    for start, end, label in segments:
        mapped = to_label(label)
        if not mapped:
            if pending_start is None:
                pending_start = start
            continue
        begin = start if pending_start is None else pending_start
        pending_start = None
        if kept and kept[-1][2] == mapped:
            kept[-1][1] = end
        else:
            kept.append([begin, end, mapped])
    if pending_start is not None and kept:
        kept[-1][1] = segments[-1][1]
    return [tuple(segment) for segment in kept]


def frame_boundary_seconds(
    frame: int, frame_length: int, frame_shift: int, sample_rate: int
) -> float:
    """Time (seconds) of the boundary before frame ``frame``: midway between the centres of
    frames ``frame - 1`` and ``frame``.

    >>> frame_boundary_seconds(10, 400, 160, 16000)  # (10 * 160 + 120) / 16000
    0.1075
    """
    return (frame * frame_shift + (frame_length - frame_shift) / 2) / sample_rate


def frame_segments_to_seconds(
    segments: Sequence[tuple[int, int, Hashable]],
    num_frames: int,
    frame_length: int,
    frame_shift: int,
    sample_rate: int,
) -> list[tuple[float, float, Hashable]]:
    """Frame segments -> ``(start, end, label)`` in seconds: inner boundaries midway between frame
    centres, the first segment from 0 and the last to the end of the last frame.

    >>> frame_segments_to_seconds([(0, 4, "a"), (4, 8, "b")], 8, 400, 160, 16000)
    [(0.0, 0.0475, 'a'), (0.0475, 0.095, 'b')]
    """

    def time(frame: int) -> float:
        if frame <= 0:
            return 0.0
        if frame >= num_frames:
            return ((num_frames - 1) * frame_shift + frame_length) / sample_rate
        return frame_boundary_seconds(frame, frame_length, frame_shift, sample_rate)

    return [(time(a), time(b), label) for a, b, label in segments]
