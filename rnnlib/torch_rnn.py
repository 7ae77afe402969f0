"""``torch.nn`` RNN, LSTM and GRU behind the rnnlib interface (cuDNN serves them on GPU).

Each layer stack holds one ``torch.nn.RNN``/``LSTM``/``GRU``, ``self.rnn``: the parameters and
their state-dict keys (``rnn.weight_ih_l0``, ``rnn.weight_hh_l0_reverse``, ...) are torch's.

Without ``lengths`` the batch goes through ``self.rnn`` as it is. With ``lengths`` it is not
packed: torch runs a packed batch frame by frame outside its fused CPU kernels (oneDNN's LSTM;
the RNN and GRU loops that multiply the inputs of all frames at once), several times slower
than the padded batch. One padded call would not do either: its outputs at valid frames are
right, but an LSTM's cell state at a sequence's last frame is nowhere in what it returns. So the
fused kernels run on stretches of the batch:

* The sequences are sorted longest first and time is cut where a sequence ends, into stretches
  over which the same sequences are unfinished (as many stretches as distinct lengths). Each
  stretch is one call of the fused kernel on the unfinished sequences, from the state the
  previous stretch ended in. A sequence's final state is the state at the end of the stretch it
  ends with, so ``h_n`` (and ``c_n``) come from its last valid frame in every layer, as with
  packing. Padded frames are never read: whatever they hold (even NaN) changes neither outputs
  nor gradients, and outputs there are zeros (what ``pad_packed_sequence`` gives). The calls
  take as many sequential steps as one padded call, the last stretches on fewer rows.
* A unidirectional stack calls ``self.rnn`` on each stretch: all layers at once, torch's dropout
  between them.
* A bidirectional stack runs layer by layer. The forward direction reads the layer's input, the
  backward one the input reversed within each sequence's length
  (:func:`~rnnlib.sequence.reverse_padded`, so that it too starts at frame 0 and ends at its
  last valid frame, the original frame 0), and its output is reversed back; the two are
  concatenated, and dropout (training only, between layers, not after the last, as torch's)
  feeds the next layer. Each direction is a one-layer unidirectional call of torch's functional
  form of the module (``torch.lstm``, ``torch.gru``, ``torch.rnn_tanh``, ``torch.rnn_relu``:
  what ``nn.LSTM`` and its kin call) on that layer's and direction's own parameters of
  ``self.rnn``, taken by name: no parameter is added, copied or renamed.

Every valid frame goes through the same recurrence as in the packed path, from the same state:
outputs, states and gradients equal packing's but for the rounding of other kernels (about 1e-7
in float32, 1e-15 in float64). Packing is left nowhere. Under ``torch.compile`` this route runs
eagerly (a graph break around the recurrence). It is device-agnostic: on CUDA the
unidirectional stretches use the module's flat cuDNN weights; a bidirectional direction's
parameters are a slice of them, which cuDNN copies into a buffer of its own at each call (its
warning about that is silenced: ``flatten_parameters()`` cannot help).
"""

import contextlib
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlib.sequence import check_lengths, check_sizes, resolve_input_size, reverse_padded

State = Tensor | tuple[Tensor, Tensor]
Step = Callable[[Tensor, State], tuple[Tensor, State]]

# torch's functional form of each module mode: (input, hx, params, has_biases, num_layers,
# dropout, train, bidirectional, batch_first) -> (output, h_n[, c_n]).
FUNCTIONAL = {
    "RNN_TANH": torch.rnn_tanh,
    "RNN_RELU": torch.rnn_relu,
    "GRU": torch.gru,
    "LSTM": torch.lstm,
}
CUDNN_COPY_WARNING = "RNN module weights are not part of single contiguous chunk of memory"


def length_stretches(lengths: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(start, stop, count)`` per stretch of frames over which the same ``count`` sequences are
    unfinished; ``lengths`` sorted longest first, so that those are the first ``count``.

    >>> length_stretches([5, 5, 3, 1])
    [(0, 1, 4), (1, 3, 3), (3, 5, 2)]
    """
    stretches, start = [], 0
    for stop in sorted(set(lengths)):
        stretches.append((start, stop, sum(n >= stop for n in lengths)))
        start = stop
    return stretches


def _rows(state: State, start: int, stop: int) -> State:
    """Sequences ``start:stop`` of a state ``[rows, batch, size]`` (or an LSTM pair of them)."""
    if isinstance(state, tuple):
        return tuple(s[:, start:stop].contiguous() for s in state)  # type: ignore[return-value]
    return state[:, start:stop].contiguous()


def _cat(states: list[State], dim: int) -> State:
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts, dim) for parts in zip(*states, strict=True))  # type: ignore
    return torch.cat(states, dim)  # type: ignore[arg-type]


def _select(state: State, index: Tensor) -> State:
    """The sequences of a state in the order of ``index``."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)  # type: ignore[return-value]
    return state.index_select(1, index)


def run_stretches(
    step: Step, x: Tensor, state: State, stretches: list[tuple[int, int, int]]
) -> tuple[Tensor, State]:
    """Run ``step`` (a fused recurrence, batch first) stretch by stretch over ``x``, sorted
    longest first and as long as the longest (the last stretch's stop): the output (zeros after
    each sequence's end) and each sequence's final state.
    """
    batch = x.shape[0]
    outputs, ended = [], []
    # One split, not a slice per stretch: a slice's backward writes its gradient into zeros of
    # the whole input, so slicing would fill and add the whole input once per stretch.
    pieces = x.split([stop - start for start, stop, _ in stretches], dim=1)
    for i, ((_, _, count), piece) in enumerate(zip(stretches, pieces, strict=True)):
        out, state = step(piece[:count], _rows(state, 0, count))
        outputs.append(out if count == batch else F.pad(out, (0, 0, 0, 0, 0, batch - count)))
        following = stretches[i + 1][2] if i + 1 < len(stretches) else 0
        ended.append(_rows(state, following, count))  # the sequences whose last frame is stop-1
    output = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)
    return output, ended[0] if len(ended) == 1 else _cat(ended[::-1], dim=1)


class _TorchRecurrent(nn.Module):
    """Shared wrapper: ``[batch, time, features]`` in, lengths without packing, orthogonal ``U``."""

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
        return self._forward_lengths(x, check_lengths(lengths, x.shape[1], x.shape[0]), hx)

    # Eager under torch.compile: the stretches are a Python loop over the batch's lengths (a new
    # graph for every new pattern), and inductor's LSTM decomposition fails on a direction whose
    # input needs no gradient; the fused kernels are what makes the recurrence fast anyway.
    @torch.compiler.disable
    def _forward_lengths(
        self, x: Tensor, lengths: Tensor, hx: State | None
    ) -> tuple[Tensor, State]:
        if isinstance(hx, list):
            hx = tuple(hx)  # an LSTM pair given as a list
        counts = lengths.tolist()
        lengths = lengths.to(x.device)
        order = None
        if any(a < b for a, b in zip(counts, counts[1:], strict=False)):  # not longest first
            order = torch.argsort(lengths, descending=True, stable=True)
            counts = [counts[i] for i in order.tolist()]
            lengths, x = lengths[order], x.index_select(0, order)
            if hx is not None:
                hx = _select(hx, order)
        longest = counts[0]
        if hx is None:
            hx = self._zero_state(x)
        with _quiet_cudnn_copies() if x.is_cuda else contextlib.nullcontext():
            out, h_n = self._run(x[:, :longest], lengths, hx, length_stretches(counts))
        if longest < x.shape[1]:
            out = F.pad(out, (0, 0, 0, x.shape[1] - longest))
        if order is not None:
            restore = torch.argsort(order)
            out, h_n = out.index_select(0, restore), _select(h_n, restore)
        return out, h_n

    def _zero_state(self, x: Tensor) -> State:
        rows = self.num_layers * self.num_directions
        proj_size = getattr(self.rnn, "proj_size", 0)
        h = x.new_zeros(rows, x.shape[0], proj_size or self.hidden_size)
        if self.rnn.mode == "LSTM":
            return h, x.new_zeros(rows, x.shape[0], self.hidden_size)
        return h

    def _run(
        self, x: Tensor, lengths: Tensor, hx: State, stretches: list[tuple[int, int, int]]
    ) -> tuple[Tensor, State]:
        """Sorted, trimmed to the longest sequence: outputs and final states, stretch by stretch."""
        if not self.bidirectional:
            return run_stretches(self.rnn, x, hx, stretches)
        layer_input, finals = x, []
        for layer in range(self.num_layers):
            outputs = []
            for direction in (0, 1):
                step = self._direction_step(layer, direction)
                row = 2 * layer + direction
                start = _rows_of_layer(hx, row)
                if direction == 0:
                    out, final = run_stretches(step, layer_input, start, stretches)
                else:
                    backward = reverse_padded(layer_input, lengths)
                    out, final = run_stretches(step, backward, start, stretches)
                    out = reverse_padded(out, lengths)
                outputs.append(out)
                finals.append(final)
            layer_input = torch.cat(outputs, dim=-1)
            if self.training and self.rnn.dropout > 0 and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.rnn.dropout, training=True)
        return layer_input, _cat(finals, dim=0)

    def _direction_step(self, layer: int, direction: int) -> Step:
        """One direction of one layer as a unidirectional one-layer call on its own parameters."""
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if self.rnn.bias else [])
        if getattr(self.rnn, "proj_size", 0) > 0:
            names.append("weight_hr")
        weights = [getattr(self.rnn, name + suffix) for name in names]  # torch's own order
        function, lstm = FUNCTIONAL[self.rnn.mode], self.rnn.mode == "LSTM"
        bias, training = self.rnn.bias, self.training

        def step(x: Tensor, state: State) -> tuple[Tensor, State]:
            result = function(x, state, weights, bias, 1, 0.0, training, False, True)
            return result[0], ((result[1], result[2]) if lstm else result[1])

        return step


@contextlib.contextmanager
def _quiet_cudnn_copies():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=CUDNN_COPY_WARNING)
        yield


def _rows_of_layer(state: State, row: int) -> State:
    """Row ``row`` (a layer and direction) of a state ``[rows, batch, size]``, kept 3-D."""
    if isinstance(state, tuple):
        return tuple(s[row : row + 1] for s in state)  # type: ignore[return-value]
    return state[row : row + 1]


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
