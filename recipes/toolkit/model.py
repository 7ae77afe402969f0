"""The acoustic model: optional convolutional front end -> rnnlib encoder -> (optional DNN
blocks) -> linear outputs."""

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recipes.toolkit.crdnn import Conv2dFrontEnd, DNNOutput
from rnnlib import build_rnn


class ConvFrontEnd(nn.Module):
    """1-D convolutions over time (same length out), batch norm over valid frames, leaky ReLU.

    Example:
        >>> front = ConvFrontEnd(40, channels=[64, 64])
        >>> front(torch.randn(2, 30, 40), torch.tensor([30, 12])).shape
        torch.Size([2, 30, 64])
    """

    def __init__(self, input_size: int, channels: list[int], kernel_size: int = 3):
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        size = input_size
        for out in channels:
            self.convs.append(nn.Conv1d(size, out, kernel_size, padding=kernel_size // 2))
            self.norms.append(nn.LayerNorm(out))
            size = out
        self.output_size = size

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        valid = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None])[..., None]
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = x * valid  # padded frames must not leak into valid ones through the kernel
            x = F.leaky_relu(norm(conv(x.transpose(1, 2)).transpose(1, 2)))
        return x * valid


class AcousticModel(nn.Module):
    """Frames ``[batch, time, features]`` -> log-probabilities ``[batch, time, num_outputs]``.

    An optional convolutional front end, an rnnlib encoder (``rnn`` holds the type, ``name``,
    and its keyword arguments), optional DNN blocks and a linear output layer with log-softmax.
    A CTC recogniser has one output per phone plus the blank (index 0); a framewise one has one
    per phone.

    The front end is 1-D convolutions over time (``frontend_channels``) or the CRDNN's 2-D
    blocks over (time, frequency) (``conv2d_channels``, pooling frequency by ``freq_pool`` per
    block, channel dropout ``conv_dropout``; :mod:`recipes.toolkit.crdnn`), not both.
    ``output_dropout`` is applied to the encoder's output; ``dnn_sizes`` adds frame-wise
    ``linear -> layer norm -> leaky ReLU -> dropout (dnn_dropout)`` blocks before the output
    layer (then ``output`` is a :class:`~recipes.toolkit.crdnn.DNNOutput`). The defaults
    of the CRDNN arguments build the model of a checkpoint that has none of them.

    Example:
        >>> model = AcousticModel(40, 49, {"name": "gru", "hidden_size": 32, "num_layers": 2})
        >>> model(torch.randn(3, 50, 40), torch.tensor([50, 40, 9])).shape
        torch.Size([3, 50, 49])
        >>> crdnn = AcousticModel(40, 49, {"name": "gru", "hidden_size": 8},
        ...                       conv2d_channels=[4, 8], dnn_sizes=[16])
        >>> crdnn(torch.randn(2, 30, 40), torch.tensor([30, 7])).shape
        torch.Size([2, 30, 49])
    """

    def __init__(
        self,
        input_size: int,
        num_outputs: int,
        rnn: Mapping,
        frontend_channels: list[int] | None = None,
        output_dropout: float = 0.0,
        conv2d_channels: list[int] | None = None,
        freq_pool: int = 2,
        conv_dropout: float = 0.0,
        dnn_sizes: list[int] | None = None,
        dnn_dropout: float = 0.0,
    ):
        super().__init__()
        if frontend_channels and conv2d_channels:
            raise ValueError(
                "model.frontend_channels (1-D front end) and model.conv2d_channels (2-D, CRDNN) "
                "are both set: choose one"
            )
        self.frontend: nn.Module | None = None
        if frontend_channels:
            self.frontend = ConvFrontEnd(input_size, list(frontend_channels))
        elif conv2d_channels:
            self.frontend = Conv2dFrontEnd(
                input_size, list(conv2d_channels), freq_pool=int(freq_pool), dropout=conv_dropout
            )
        encoder_input = self.frontend.output_size if self.frontend else input_size
        options = dict(rnn)
        name = options.pop("name")
        self.encoder = build_rnn(name, input_size=encoder_input, **options)
        self.dropout = nn.Dropout(output_dropout)
        if dnn_sizes:
            self.output: nn.Module = DNNOutput(
                self.encoder.output_size, list(dnn_sizes), num_outputs, dnn_dropout
            )
        else:
            self.output = nn.Linear(self.encoder.output_size, num_outputs)

    def forward(self, feats: Tensor, lengths: Tensor) -> Tensor:
        x = self.frontend(feats, lengths) if self.frontend else feats
        encoded, _ = self.encoder(x, lengths=lengths)
        return F.log_softmax(self.output(self.dropout(encoded)), dim=-1)
