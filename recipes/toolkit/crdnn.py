"""The CRDNN shape's parts around the recurrent encoder: 2-D convolution blocks before it, DNN
blocks after it (SpeechBrain's CRDNN, with time left at full resolution).

A :class:`Conv2dFrontEnd` block is two 3x3 convolutions over (time, frequency), each followed by
a layer norm over (frequency, channels) of its frame and a leaky ReLU, then max pooling over
frequency only and channel dropout; its output is every frame's channels x pooled frequency bins,
flattened. A :class:`DNNBlocks` layer is linear -> layer norm -> leaky ReLU -> dropout, frame by
frame; :class:`DNNOutput` is the blocks and the output layer. Padded frames are zeroed before
every convolution, so they change no valid frame.

>>> front = Conv2dFrontEnd(40, channels=[8, 16], freq_pool=2)
>>> front(torch.randn(2, 30, 40), torch.tensor([30, 12])).shape, front.output_size
(torch.Size([2, 30, 160]), 160)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _valid(x: Tensor, lengths: Tensor) -> Tensor:
    """``[batch, time]`` bool: frame ``t`` of row ``b`` is within ``lengths[b]``."""
    return torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]


class Conv2dBlock(nn.Module):
    """Two ``kernel_size`` 2-D convolutions (same size out), each with a layer norm over
    (frequency, channels) and a leaky ReLU; max pooling of ``freq_pool`` over frequency; channel
    dropout. Over ``[batch, channels, time, freq]``; padded frames are zeroed before each conv.

    >>> block = Conv2dBlock(1, 4, freq_bins=10, freq_pool=2)
    >>> block(torch.randn(2, 1, 7, 10), torch.ones(2, 7, dtype=torch.bool)).shape
    torch.Size([2, 4, 7, 5])
    """

    def __init__(
        self, in_channels: int, out_channels: int, freq_bins: int, kernel_size: int = 3,
        freq_pool: int = 2, dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        padding = kernel_size // 2
        self.convs = nn.ModuleList(
            nn.Conv2d(c, out_channels, kernel_size, padding=padding)
            for c in (in_channels, out_channels)
        )
        self.norms = nn.ModuleList(nn.LayerNorm([freq_bins, out_channels]) for _ in range(2))
        self.freq_pool = freq_pool
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        mask = valid[:, None, :, None].to(x.dtype)  # [batch, 1, time, 1]
        for conv, norm in zip(self.convs, self.norms, strict=True):
            y = conv(x * mask)  # padded frames must not leak into valid ones through the kernel
            x = F.leaky_relu(norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        if self.freq_pool > 1:
            x = F.max_pool2d(x, kernel_size=(1, self.freq_pool))
        return self.dropout(x)


class Conv2dFrontEnd(nn.Module):
    """Frames ``[batch, time, freq]`` -> ``[batch, time, channels[-1] * pooled freq]``: one
    :class:`Conv2dBlock` per entry of ``channels``; time keeps its resolution (the CTC frame rate),
    frequency shrinks by ``freq_pool`` per block (rounded down)."""

    def __init__(
        self, input_size: int, channels: list[int], kernel_size: int = 3, freq_pool: int = 2,
        dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        if freq_pool < 1:
            raise ValueError(f"model.freq_pool must be a positive integer, got {freq_pool}")
        self.input_size = input_size
        self.blocks = nn.ModuleList()
        bins, size = input_size, 1
        for out in channels:
            self.blocks.append(Conv2dBlock(size, out, bins, kernel_size, freq_pool, dropout))
            bins, size = bins // freq_pool, out
            if bins < 1:
                raise ValueError(
                    f"{len(channels)} conv2d blocks pooling frequency by {freq_pool} leave no bin "
                    f"of {input_size} features: lower model.freq_pool or model.conv2d_channels"
                )
        self.output_size = size * bins

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        valid = _valid(x, lengths)
        y = x.unsqueeze(1)  # [batch, 1, time, freq]
        for block in self.blocks:
            y = block(y, valid)
        batch, channels, time, bins = y.shape
        y = y.permute(0, 2, 1, 3).reshape(batch, time, channels * bins)
        return y * valid[..., None].to(y.dtype)


class DNNBlocks(nn.Sequential):
    """Frame-wise ``linear -> layer norm -> leaky ReLU -> dropout`` blocks of ``sizes`` units.

    >>> dnn = DNNBlocks(16, [8, 8], dropout=0.1)
    >>> dnn(torch.randn(2, 5, 16)).shape, dnn.output_size
    (torch.Size([2, 5, 8]), 8)
    """

    def __init__(self, input_size: int, sizes: list[int], dropout: float = 0.0) -> None:
        layers: list[nn.Module] = []
        size = input_size
        for out in sizes:
            layers += [nn.Linear(size, out), nn.LayerNorm(out), nn.LeakyReLU(), nn.Dropout(dropout)]
            size = out
        super().__init__(*layers)
        self.output_size = size


class DNNOutput(nn.Module):
    """:class:`DNNBlocks` then the linear output layer (``linear``, ``out_features`` outputs):
    what the acoustic model applies to the encoder's output in place of a single linear layer.

    >>> head = DNNOutput(16, [8], num_outputs=5)
    >>> head(torch.randn(2, 3, 16)).shape, head.out_features
    (torch.Size([2, 3, 5]), 5)
    """

    def __init__(
        self, input_size: int, sizes: list[int], num_outputs: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.blocks = DNNBlocks(input_size, sizes, dropout)
        self.linear = nn.Linear(self.blocks.output_size, num_outputs)

    @property
    def out_features(self) -> int:
        return self.linear.out_features

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.blocks(x))
