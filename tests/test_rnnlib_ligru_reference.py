"""LiGRU and SLi-GRU against a step-by-step reference written here from the Light GRU equations.

a_t = BN(W x_t) (batch statistics over valid frames in training), z_t = sigmoid(a_z + U_z h),
c_t = f(a_h + U_h h) (SLi-GRU: LN(U h) first), h_t = z_t h_{t-1} + (1 - z_t) c_t; padded frames
hold the state and output zero; bidirectional runs the reversed valid part of each sequence.
"""

import math

import pytest
import torch

from rnnlib import LiGRU, SLiGRU

ACTIVATIONS = {
    "relu": lambda v: max(v, 0.0),
    "leaky_relu": lambda v: v if v > 0 else 0.01 * v,
    "tanh": math.tanh,
    "sin": math.sin,
}


def batch_norm_over_valid(a, lengths, bn, training):
    """a: [B, T, C] projections; statistics over valid frames only (biased variance)."""
    frames = torch.cat([a[i, :n] for i, n in enumerate(lengths)])
    if training:
        mean, var = frames.mean(0), frames.var(0, unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    return (a - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias


def layer_norm(v, eps=1e-5):
    mean = sum(v) / len(v)
    var = sum((e - mean) ** 2 for e in v) / len(v)
    return [(e - mean) / math.sqrt(var + eps) for e in v]


def run_direction(a_seq, U, h0, f, stabilised):
    """Scalar loop over one sequence: a_seq [T, 2H] (valid frames only)."""
    hidden = U.shape[1]
    h = list(h0)
    outputs = []
    for a_t in a_seq:
        u = [sum(U[k, j].item() * h[j] for j in range(hidden)) for k in range(2 * hidden)]
        if stabilised:
            u = layer_norm(u)
        new = []
        for j in range(hidden):
            z = 1 / (1 + math.exp(-(a_t[j].item() + u[j])))
            c = f(a_t[hidden + j].item() + u[hidden + j])
            new.append(z * h[j] + (1 - z) * c)
        h = new
        outputs.append(h)
    return torch.tensor(outputs, dtype=torch.double), torch.tensor(h, dtype=torch.double)


def reference(rnn, x, lengths, training):
    batch, time, _ = x.shape
    directions = rnn.num_directions
    layer_input = x
    final = []
    for layer in rnn.layers:
        out = torch.zeros(batch, time, rnn.hidden_size * directions, dtype=torch.double)
        h_n = torch.zeros(directions, batch, rnn.hidden_size, dtype=torch.double)
        for d in range(directions):
            weights = layer[0] if rnn.share_directions else layer[d]
            a = weights.w(layer_input)
            if rnn.normalization == "batchnorm":
                a = batch_norm_over_valid(a, lengths, weights.norm, training)
            elif rnn.normalization == "layernorm":
                a = weights.norm(a)
            for i, n in enumerate(lengths):
                seq = a[i, :n] if d == 0 else a[i, :n].flip(0)
                o, h = run_direction(
                    seq.detach(),
                    weights.weight_hh.detach(),
                    [0.0] * rnn.hidden_size,
                    ACTIVATIONS[rnn.nonlinearity],
                    rnn.recurrent_norm,
                )
                if d == 1:
                    o = o.flip(0)
                out[i, :n, d * rnn.hidden_size : (d + 1) * rnn.hidden_size] = o
                h_n[d, i] = h
        final.append(h_n)
        layer_input = out
    return layer_input, torch.cat(final)


CONFIGS = [
    dict(cls=LiGRU, bidirectional=False, nonlinearity="relu", normalization="batchnorm"),
    dict(cls=LiGRU, bidirectional=True, nonlinearity="leaky_relu", normalization="batchnorm"),
    dict(
        cls=LiGRU,
        bidirectional=True,
        nonlinearity="tanh",
        normalization="layernorm",
        share_directions=True,
    ),
    dict(cls=LiGRU, bidirectional=False, nonlinearity="sin", normalization="none"),
    dict(cls=SLiGRU, bidirectional=True, nonlinearity="relu", normalization="batchnorm"),
    dict(
        cls=SLiGRU,
        bidirectional=True,
        nonlinearity="relu",
        normalization="batchnorm",
        share_directions=True,
    ),
    dict(cls=SLiGRU, bidirectional=False, nonlinearity="tanh", normalization="none"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
@pytest.mark.parametrize("training", [True, False])
def test_layer_matches_equations(config, training):
    config = dict(config)
    cls = config.pop("cls")
    torch.manual_seed(0)
    rnn = cls(input_size=3, hidden_size=4, num_layers=2, **config).double()
    if not training:  # give the running statistics something other than their defaults
        rnn.train()(torch.randn(3, 6, 3, dtype=torch.double))
    rnn.train(training)
    lengths = [6, 2, 5]
    x = torch.randn(3, 6, 3, dtype=torch.double)
    out, h_n = rnn(x, lengths=torch.tensor(lengths))
    expected_out, expected_h = reference(rnn, x, lengths, training)
    torch.testing.assert_close(out, expected_out)
    torch.testing.assert_close(h_n, expected_h)


@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("lengths", [None, [6, 2, 5]])
def test_running_statistics_follow_batch_norm_of_the_valid_frames(share, lengths):
    """Whether the kernel normalises (separate directions) or the layer does (shared), each
    direction's running estimates move like nn.BatchNorm1d's fed the valid frames of W x."""
    torch.manual_seed(0)
    rnn = LiGRU(4, input_size=3, bidirectional=True, share_directions=share).double().train()
    expected = [torch.nn.BatchNorm1d(8, momentum=0.05).double() for _ in rnn.layers[0]]
    lengths_tensor = None if lengths is None else torch.tensor(lengths)
    for _ in range(2):
        x = torch.randn(3, 6, 3, dtype=torch.double)
        rnn(x, lengths=lengths_tensor)
        for weights, bn in zip(rnn.layers[0], expected, strict=True):
            a = weights.w(x).detach()
            bn(
                a.reshape(-1, 8)
                if lengths is None
                else torch.cat([a[i, :n] for i, n in enumerate(lengths)])
            )
    for weights, bn in zip(rnn.layers[0], expected, strict=True):
        torch.testing.assert_close(weights.norm.running_mean, bn.running_mean)
        torch.testing.assert_close(weights.norm.running_var, bn.running_var)
        assert int(weights.norm.num_batches_tracked) == 2


@pytest.mark.parametrize("cls", [LiGRU, SLiGRU])
@pytest.mark.parametrize("share", [False, True])
def test_gradcheck_float64(cls, share):
    torch.manual_seed(0)
    rnn = cls(
        input_size=3,
        hidden_size=3,
        num_layers=2,
        bidirectional=True,
        share_directions=share,
        nonlinearity="tanh",
    ).double()
    lengths = torch.tensor([4, 2])
    x = torch.randn(2, 4, 3, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(4, 2, 3, dtype=torch.double, requires_grad=True)
    names = [name for name, _ in rnn.named_parameters()]

    def run(x, h0, *weights):
        parameters = dict(zip(names, weights, strict=True))
        return torch.func.functional_call(rnn, parameters, (x,), {"lengths": lengths, "hx": h0})

    weights = [p.detach().clone().requires_grad_() for p in rnn.parameters()]
    assert torch.autograd.gradcheck(run, (x, h0, *weights))
