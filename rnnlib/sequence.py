"""Helpers for padded batches of sequences: masks, length-aware reversal, input sizes."""

from collections.abc import Sequence

import torch
from torch import Tensor


def is_positive_int(value: object) -> bool:
    """Whether ``value`` is an ``int`` (not a ``bool``) of at least 1.

    >>> is_positive_int(3), is_positive_int(0), is_positive_int(True), is_positive_int("3")
    (True, False, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_sizes(hidden_size: object, num_layers: object) -> None:
    """Raise ``ValueError`` unless both are positive integers.

    >>> check_sizes(64, 0)
    Traceback (most recent call last):
    ...
    ValueError: num_layers must be a positive integer, got 0
    """
    for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers)):
        if not is_positive_int(value):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def resolve_input_size(input_size: int | None, input_shape: Sequence[int] | None) -> int:
    """Return the feature size from ``input_size`` or an example ``[batch, time, features]`` shape.

    >>> resolve_input_size(None, (8, 100, 40))
    40
    """
    if input_size is not None:
        return int(input_size)
    if input_shape is not None:
        if len(input_shape) != 3:
            raise ValueError(
                f"input_shape must be [batch, time, features], got {list(input_shape)}"
            )
        return int(input_shape[-1])
    raise ValueError("give either input_size or input_shape ([batch, time, features])")


def lengths_to_mask(lengths: Tensor | None, max_len: int, batch: int, device=None) -> Tensor | None:
    """Boolean mask ``[batch, time]``, True on valid frames; None when every frame is valid.

    >>> lengths_to_mask(torch.tensor([2, 3]), 3, 2).tolist()
    [[True, True, False], [True, True, True]]
    """
    if lengths is None:
        return None
    lengths = check_lengths(lengths, max_len, batch)
    steps = torch.arange(max_len, device=lengths.device)
    mask = steps.unsqueeze(0) < lengths.unsqueeze(1)
    return mask if device is None else mask.to(device)


def check_lengths(lengths: Tensor, max_len: int, batch: int) -> Tensor:
    """Validate a lengths tensor (valid frames per sequence) and return it as int64."""
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.numel() != batch:
        raise ValueError(f"lengths must have shape [{batch}], got {list(lengths.shape)}")
    if lengths.is_floating_point():
        raise ValueError("lengths are frame counts (integers), not relative lengths")
    if (lengths < 1).any() or (lengths > max_len).any():
        raise ValueError(f"lengths must lie in [1, {max_len}], got {lengths.tolist()}")
    return lengths.long()


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of ``x`` ``[batch, time, ...]`` within its valid length.

    Padded frames stay at the end, so the reversed batch is padded like the input.

    >>> x = torch.tensor([[1, 2, 0], [1, 2, 3]]).unsqueeze(-1)
    >>> reverse_padded(x, torch.tensor([2, 3])).squeeze(-1).tolist()
    [[2, 1, 0], [3, 2, 1]]
    """
    if lengths is None:
        return x.flip(1)
    batch, time = x.shape[:2]
    steps = torch.arange(time, device=x.device).unsqueeze(0)
    lengths = lengths.to(x.device).unsqueeze(1)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)
    index = index.view(batch, time, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)
