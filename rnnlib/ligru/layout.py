"""How the states of a Light GRU loop become a layer's output, and how the backward gets them back.

The loop keeps its states time-major, ``[D, time, rows, H]``. A layer wants ``[batch, time,
features]`` with the backward direction turned back into input order. The kernel returns (and
saves for its backward) that layer output itself, so the next layer's input projection and the
recurrence share one tensor instead of holding two copies of the states.

Layouts:
    ``stacked``: ``D`` directions as given, output ``[D, rows, time, H]``.
    ``bidirectional``: ``D = 2``, the second reversed within each length, output
    ``[rows, time, 2H]`` (forward features first).
    ``shared_bidirectional``: ``D = 1`` with ``2 * batch`` rows, the last ``batch`` rows being the
    reversed sequences (shared weights), output ``[batch, time, 2H]``.

Padded frames of the output are zero. The states returned by :func:`states_from_output` are zero
there too (the loop held them instead): the backward never reads a state on a padded frame.
"""

import torch  # noqa: F401 (the doctests use it)
from torch import Tensor

from rnnlib.sequence import reverse_padded

LAYOUTS = ("stacked", "bidirectional", "shared_bidirectional")


def check_layout(layout: str, directions: int) -> None:
    """Raise ``ValueError`` unless ``layout`` is known and fits ``directions`` loops."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
    expected = {"bidirectional": 2, "shared_bidirectional": 1}.get(layout, directions)
    if directions != expected:
        raise ValueError(f"layout {layout!r} needs {expected} direction(s), got {directions}")


def _loops(time_major: Tensor, layout: str, mask: Tensor | None):
    """Split time-major ``[D, time, rows, H]`` into the forward and the (reversed) backward loop
    ``[time, batch, H]`` of a bidirectional layout, with the lengths of those ``batch`` rows."""
    if layout == "bidirectional":
        forward, backward = time_major[0], time_major[1]
    else:  # shared_bidirectional: the reversed sequences are the last half of the rows
        batch = time_major.shape[2] // 2
        forward, backward = time_major[0, :, :batch], time_major[0, :, batch:]
        mask = None if mask is None else mask[:batch]
    return forward, backward, None if mask is None else mask.sum(1)


def output_from_states(states: Tensor, mask: Tensor | None, layout: str) -> Tensor:
    """Turn time-major states ``[D, time, rows, H]`` into the layer output of ``layout``.

    >>> states = torch.arange(6.0).view(2, 3, 1, 1)  # two directions, three steps, one row
    >>> output_from_states(states, None, "bidirectional").squeeze(0).tolist()
    [[0.0, 5.0], [1.0, 4.0], [2.0, 3.0]]
    """
    if layout == "stacked":
        out = states.transpose(1, 2)  # a view of the loop's buffer when nothing is padded
        return out if mask is None else out * mask.unsqueeze(-1)
    forward, backward, lengths = _loops(states, layout, mask)
    time, batch, hidden = forward.shape
    out = states.new_empty(batch, time, 2 * hidden)
    out[..., :hidden].copy_(forward.transpose(0, 1))
    out[..., hidden:].copy_(reverse_padded(backward.transpose(0, 1), lengths))
    if mask is not None:
        out.mul_(mask[:batch].unsqueeze(-1))
    return out


def states_from_output(output: Tensor, mask: Tensor | None, layout: str, into: Tensor) -> Tensor:
    """Write the states behind ``output`` time-major into ``into`` ``[D, time, rows, H]``.

    The inverse of :func:`output_from_states` on valid frames (padded frames come back zero);
    it also turns a gradient of the output into per-loop gradients.

    >>> states = torch.randn(1, 4, 6, 3)
    >>> output = output_from_states(states, None, "shared_bidirectional")
    >>> torch.equal(states_from_output(output, None, "shared_bidirectional",
    ...                                torch.empty_like(states)), states)
    True
    """
    if layout == "stacked":
        into.copy_(output.transpose(1, 2))
        return into
    forward, backward, lengths = _loops(into, layout, mask)
    hidden = into.shape[-1]
    forward.copy_(output[..., :hidden].transpose(0, 1))
    backward.copy_(reverse_padded(output[..., hidden:], lengths).transpose(0, 1))
    return into
