"""``torch.nn`` RNN, LSTM and GRU behind the rnnlib interface (cuDNN serves them on GPU)."""

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlib.sequence import check_lengths, check_sizes, resolve_input_size

State = Tensor | tuple[Tensor, Tensor]


class _TorchRecurrent(nn.Module):
    """Shared wrapper: ``[batch, time, features]`` in, lengths via packing, orthogonal ``U``."""

    torch_class: type[nn.RNNBase]

    def __init__(
        self,
        hidden_size: int,
        input_size: int | None = None,
        input_shape: Sequence[int] | None = None,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
        **options,
    ):
        super().__init__()
        check_sizes(hidden_size, num_layers)
        self.input_size = resolve_input_size(input_size, input_shape)
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.num_directions
        self.rnn = self.torch_class(
            self.input_size,
            hidden_size,
            num_layers=num_layers,
            bias=bias,
            batch_first=True,
            dropout=dropout,
            bidirectional=bidirectional,
            **options,
        )
        self.reset_recurrent_weights()

    def reset_recurrent_weights(self) -> None:
        """Orthogonal initialisation of each gate block of every recurrent weight."""
        with torch.no_grad():
            for name, weight in self.rnn.named_parameters():
                if name.startswith("weight_hh"):
                    for block in weight.split(self.hidden_size, dim=0):
                        nn.init.orthogonal_(block)

    def forward(
        self, x: Tensor, lengths: Tensor | None = None, hx: State | None = None
    ) -> tuple[Tensor, State]:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"expected input [batch, time, {self.input_size}], got {list(x.shape)}"
            )
        if lengths is None:
            return self.rnn(x, hx)
        lengths = check_lengths(lengths, x.shape[1], x.shape[0])
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, h_n = self.rnn(packed, hx)
        out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=x.shape[1])
        return out, h_n


class RNN(_TorchRecurrent):
    """Elman RNN (``torch.nn.RNN``); ``nonlinearity`` is tanh or relu.

    Example:
        >>> rnn = RNN(hidden_size=16, input_size=8, num_layers=2, nonlinearity="relu")
        >>> out, h_n = rnn(torch.randn(3, 10, 8), lengths=torch.tensor([10, 4, 7]))
        >>> out.shape, h_n.shape
        (torch.Size([3, 10, 16]), torch.Size([2, 3, 16]))
    """

    torch_class = nn.RNN

    def __init__(self, hidden_size: int, nonlinearity: str = "tanh", **kwargs):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN nonlinearity must be tanh or relu, got {nonlinearity!r}")
        super().__init__(hidden_size, nonlinearity=nonlinearity, **kwargs)


class LSTM(_TorchRecurrent):
    """Long short-term memory (``torch.nn.LSTM``); states are ``(h, c)`` pairs.

    Example:
        >>> rnn = LSTM(hidden_size=16, input_shape=(3, 10, 8), bidirectional=True)
        >>> out, (h_n, c_n) = rnn(torch.randn(3, 10, 8))
        >>> out.shape, h_n.shape, c_n.shape
        (torch.Size([3, 10, 32]), torch.Size([2, 3, 16]), torch.Size([2, 3, 16]))
    """

    torch_class = nn.LSTM


class GRU(_TorchRecurrent):
    """Gated recurrent unit (``torch.nn.GRU``).

    Example:
        >>> rnn = GRU(hidden_size=16, input_size=8, num_layers=3, dropout=0.1)
        >>> out, h_n = rnn(torch.randn(1, 5, 8))
        >>> out.shape, h_n.shape
        (torch.Size([1, 5, 16]), torch.Size([3, 1, 16]))
    """

    torch_class = nn.GRU
