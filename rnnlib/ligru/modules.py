"""Light GRU (Ravanelli et al. 2018) and stabilised Light GRU (Moumen & Parcollet 2023) stacks."""

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlib.ligru.masked_norm import MaskedBatchNorm1d, frame_count
from rnnlib.ligru.products import linear
from rnnlib.ligru.recurrence import NONLINEARITIES, ligru_recurrence_directions
from rnnlib.sequence import check_sizes, lengths_to_mask, resolve_input_size, reverse_padded

NORMALIZATIONS = ("batchnorm", "layernorm", "none")


class Projection(NamedTuple):
    """One direction's input to the recurrence: ``a = scale * values + shift`` per frame, or
    ``values`` itself when ``scale`` is None; with ``batch_norm_eps`` ``values`` is still to be
    normalised with batch statistics (by the kernel, see :meth:`LiGRUDirection.project`)."""

    values: Tensor
    scale: Tensor | None
    shift: Tensor | None
    batch_norm_eps: float | None = None


class LiGRUDirection(nn.Module):
    """The weights of one direction of one Light GRU layer: ``W``, its normalisation, and ``U``.

    ``a = norm(W x)`` is computed for all frames at once; ``U`` drives the recurrence.

    Example:
        >>> d = LiGRUDirection(input_size=40, hidden_size=16, normalization="batchnorm", bias=True)
        >>> x_hat, scale, shift, _ = d.project(torch.randn(2, 7, 40), None)
        >>> x_hat.shape, scale.shape
        (torch.Size([2, 7, 32]), torch.Size([32]))
    """

    def __init__(self, input_size: int, hidden_size: int, normalization: str, bias: bool):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"unknown normalization {normalization!r}; choose one of {NORMALIZATIONS}"
            )
        self.normalization = normalization
        # With a normalisation after it, a bias on W would be cancelled: keep it only without one.
        self.w = nn.Linear(input_size, 2 * hidden_size, bias=bias and normalization == "none")
        if normalization == "batchnorm":
            self.norm: nn.Module = MaskedBatchNorm1d(2 * hidden_size, momentum=0.05)
        elif normalization == "layernorm":
            self.norm = nn.LayerNorm(2 * hidden_size)
        else:
            self.norm = nn.Identity()
        self.weight_hh = nn.Parameter(torch.empty(2 * hidden_size, hidden_size))
        self.reset_recurrent_weights()

    def reset_recurrent_weights(self) -> None:
        """Orthogonal initialisation of each gate block of ``U``."""
        hidden = self.weight_hh.shape[1]
        with torch.no_grad():
            for block in self.weight_hh.split(hidden, dim=0):
                nn.init.orthogonal_(block)

    def project(
        self,
        x: Tensor,
        mask: Tensor | None,
        lengths: Tensor | None = None,
        reverse: bool = False,
        fuse_batch_norm: bool = False,
    ) -> Projection:
        """Return the :class:`Projection` ``a = scale * values + shift`` (or ``values`` itself when
        ``scale`` is None) ``[batch, time, 2 * hidden]`` for every frame of ``x``.

        With batch norm, ``values`` is the normalised ``x_hat`` and the affine step is left to the
        recurrence kernel, which then stores ``x_hat`` only; with ``fuse_batch_norm`` in training
        ``values`` is ``W x`` and the kernel normalises too (``batch_norm_eps``; record the
        statistics it returns with :meth:`MaskedBatchNorm1d.record_batch_stats`). In evaluation
        the running statistics fold into ``scale`` and ``shift`` and ``values`` is ``W x``.
        ``reverse`` turns each sequence around within its length first (the backward
        direction's input order).
        """
        if type(self.w) is nn.Linear:
            a = linear(x, self.w.weight, self.w.bias)
        else:  # a replaced projection (e.g. dynamically quantised): its own forward
            a = self.w(x)
        if reverse:
            a = reverse_padded(a, lengths)
        if self.normalization == "batchnorm":
            norm = self.norm
            if not norm.uses_batch_stats():  # evaluation: no pass over the frames
                return Projection(a, *norm.folded_affine())
            if fuse_batch_norm and norm.affine:
                return Projection(a, norm.weight, norm.bias, norm.eps)
            return Projection(norm.normalise(a, mask), norm.weight, norm.bias)
        return Projection(self.norm(a), None, None)


class LiGRU(nn.Module):
    r"""Multi-layer Light GRU over ``[batch, time, features]``, optionally bidirectional.

    Per layer and direction (``W: in -> 2H`` without bias, ``U: H -> 2H``):

    .. math::
        a_t = \mathrm{BN}(W x_t), \quad z_t = \sigma(a_{z,t} + U_z h_{t-1}),
        \quad c_t = f(a_{h,t} + U_h h_{t-1}), \quad h_t = z_t h_{t-1} + (1 - z_t) c_t

    Args:
        hidden_size: ``H``, features of the state per direction.
        input_size: input features (or give ``input_shape``).
        input_shape: an example input shape ``[batch, time, features]``.
        num_layers: stacked layers.
        bidirectional: add a backward direction; outputs are concatenated ``[fwd, bwd]``.
        dropout: dropout on the outputs of every layer but the last.
        recurrent_dropout: dropout on the candidate ``c_t``, one mask per sequence for all steps.
        nonlinearity: ``f``: relu, leaky_relu, tanh or sin.
        normalization: of ``W x``: batchnorm (over valid frames), layernorm or none.
        share_directions: the backward direction reuses the forward weights (SpeechBrain's
            default); the reversed sequences run as extra batch rows.
        bias: a bias on ``W x`` when there is no normalisation.

    Shapes: ``forward(x, lengths=None, hx=None)`` returns ``output [batch, time, H * D]`` and
    ``h_n [num_layers * D, batch, H]`` (``D`` = 2 if bidirectional), the state at each
    sequence's last valid frame. ``lengths`` are valid frames per sequence; padded output frames
    are zero. ``hx`` has the shape of ``h_n`` and continues from a given state.

    Example:
        >>> rnn = LiGRU(hidden_size=32, input_shape=(4, 50, 40), num_layers=2, bidirectional=True)
        >>> out, h_n = rnn(torch.randn(4, 50, 40), lengths=torch.tensor([50, 42, 30, 7]))
        >>> out.shape, h_n.shape
        (torch.Size([4, 50, 64]), torch.Size([4, 4, 32]))
    """

    recurrent_norm = False
    #: run the step-by-step autograd reference instead of the fast kernel (for tests).
    reference_recurrence = False

    def __init__(
        self,
        hidden_size: int,
        input_size: int | None = None,
        input_shape: Sequence[int] | None = None,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        nonlinearity: str = "relu",
        normalization: str = "batchnorm",
        share_directions: bool = False,
        bias: bool = True,
    ):
        super().__init__()
        check_sizes(hidden_size, num_layers)
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"unknown nonlinearity {nonlinearity!r}; choose one of {NONLINEARITIES}"
            )
        for name, p in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {p}")
        self.input_size = resolve_input_size(input_size, input_shape)
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.num_directions
        self.dropout = dropout
        self.recurrent_dropout = recurrent_dropout
        self.nonlinearity = nonlinearity
        self.normalization = normalization
        self.share_directions = share_directions and bidirectional
        weight_sets = 1 if self.share_directions else self.num_directions
        self.layers = nn.ModuleList()
        for layer in range(num_layers):
            size_in = self.input_size if layer == 0 else self.output_size
            self.layers.append(
                nn.ModuleList(
                    LiGRUDirection(size_in, hidden_size, normalization, bias)
                    for _ in range(weight_sets)
                )
            )

    def forward(
        self, x: Tensor, lengths: Tensor | None = None, hx: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"expected input [batch, time, {self.input_size}], got {list(x.shape)}"
            )
        batch, time, _ = x.shape
        mask = lengths_to_mask(lengths, time, batch, device=x.device)
        if mask is not None:
            lengths = mask.sum(1)
        states = self._initial_states(x, hx)
        final_states = []
        for index, directions in enumerate(self.layers):
            h0 = states[index * self.num_directions : (index + 1) * self.num_directions]
            x, h_n = self._layer_forward(directions, x, lengths, mask, h0)
            final_states.append(h_n)
            if self.dropout > 0 and index < self.num_layers - 1:
                x = F.dropout(x, self.dropout, self.training)
        return x, torch.cat(final_states, dim=0)

    def _initial_states(self, x: Tensor, hx: Tensor | None) -> Tensor:
        shape = (self.num_layers * self.num_directions, x.shape[0], self.hidden_size)
        if hx is None:
            return x.new_zeros(shape)
        if tuple(hx.shape) != shape:
            raise ValueError(f"hx must have shape {list(shape)}, got {list(hx.shape)}")
        return hx.to(x.dtype)

    def _drop_mask(self, like: Tensor, shape: tuple[int, int]) -> Tensor | None:
        """Recurrent dropout masks ``[*shape, H]`` (scaled), one per sequence, or None."""
        if not self.training or self.recurrent_dropout == 0:
            return None
        keep = 1.0 - self.recurrent_dropout
        return like.new_empty(*shape, self.hidden_size).bernoulli_(keep) / keep

    def _layer_forward(
        self,
        directions: nn.ModuleList,
        x: Tensor,
        lengths: Tensor | None,
        mask: Tensor | None,
        h0: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """One layer: ``x [B, T, in]``, ``h0 [D, B, H]`` -> ``([B, T, H * D], [D, B, H])``.

        Both directions run in one recurrence loop: with shared weights the reversed sequences
        are extra batch rows, with separate weights a batched product over the two directions.
        """
        batch = x.shape[0]
        if not self.bidirectional:
            projection = directions[0].project(x, mask, fuse_batch_norm=True)
            out, h_n = self._recurrence([projection], directions, h0, mask, "stacked")
            return out[0], h_n
        if self.share_directions:
            values, scale, shift, _ = directions[0].project(x, mask)
            both = Projection(torch.cat([values, reverse_padded(values, lengths)]), scale, shift)
            mask_both = None if mask is None else torch.cat([mask, mask], dim=0)
            h0_both = h0.reshape(1, 2 * batch, -1)
            out, h_n = self._recurrence(
                [both], directions, h0_both, mask_both, "shared_bidirectional"
            )
            return out, h_n.view(2, batch, -1)
        projections = [
            directions[0].project(x, mask, fuse_batch_norm=True),
            directions[1].project(x, mask, lengths, reverse=True, fuse_batch_norm=True),
        ]
        return self._recurrence(projections, directions, h0, mask, "bidirectional")

    def _recurrence(
        self,
        projections: list[Projection],
        directions: nn.ModuleList,
        h0: Tensor,
        mask: Tensor | None,
        layout: str,
    ) -> tuple[Tensor, Tensor]:
        """Run ``D`` recurrences on the directions' projections, ``h0 [D, rows, H]``."""
        values = [p.values for p in projections]
        fused = projections[0].scale is not None
        batch_norm_eps = projections[0].batch_norm_eps
        out, h_n, *statistics = ligru_recurrence_directions(
            values,
            [d.weight_hh for d in directions],
            h0,
            mask,
            self.nonlinearity,
            self.recurrent_norm,
            self._drop_mask(values[0], (len(values), h0.shape[1])),
            reference=self.reference_recurrence,
            scales=[p.scale for p in projections] if fused else None,
            shifts=[p.shift for p in projections] if fused else None,
            layout=layout,
            batch_norm_eps=batch_norm_eps,
        )
        if batch_norm_eps is not None:
            count = frame_count(values[0], mask)
            for direction, mean, var in zip(directions, *statistics, strict=True):
                direction.norm.record_batch_stats(mean, var, count)
        return out, h_n

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"bidirectional={self.bidirectional}, share_directions={self.share_directions}, "
            f"nonlinearity={self.nonlinearity}, normalization={self.normalization}, "
            f"dropout={self.dropout}, recurrent_dropout={self.recurrent_dropout}"
        )


class SLiGRU(LiGRU):
    r"""Stabilised Light GRU: a Light GRU with layer norm (no affine) on ``U h_{t-1}``.

    .. math::
        z_t = \sigma(a_{z,t} + \mathrm{LN}(U h_{t-1})_z), \quad
        c_t = f(a_{h,t} + \mathrm{LN}(U h_{t-1})_h)

    The normalisation keeps the ReLU recurrence from exploding with large hidden sizes. It takes
    the arguments of :class:`LiGRU`.

    Example:
        >>> rnn = SLiGRU(hidden_size=16, input_size=8, bidirectional=True, share_directions=True)
        >>> out, h_n = rnn(torch.randn(3, 20, 8))
        >>> out.shape, h_n.shape
        (torch.Size([3, 20, 32]), torch.Size([2, 3, 16]))
    """

    recurrent_norm = True
