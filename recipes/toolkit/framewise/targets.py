"""Frame-level training targets from time-aligned label segments, and back.

A segment is ``(start_sample, end_sample, label)`` with the end exclusive. Frame ``t`` covers
samples ``[t * frame_shift, t * frame_shift + frame_length)`` and takes the label of the segment
that contains its centre sample ``t * frame_shift + frame_length // 2``.

Example:
    >>> segments = [(0, 300, "a"), (300, 700, "b")]
    >>> labels = frame_labels(segments, 6, 200, 100, {"a": 0, "b": 1})
    >>> labels.tolist()
    [0, 0, 1, 1, 1, 1]
    >>> frames_to_segments(labels.tolist())
    [(0, 2, 0), (2, 6, 1)]
"""

from collections.abc import Hashable, Mapping, Sequence

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
