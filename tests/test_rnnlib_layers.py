"""Behaviour of every rnnlib layer type: shapes, padding, causality, state carry-over, init."""

import itertools

import pytest
import torch

import rnnlib
from rnnlib import build_rnn

TYPES = ["rnn", "lstm", "gru", "ligru", "sligru"]
INPUT, HIDDEN = 6, 5


def make(name, *, layers=1, bidirectional=False, **kwargs):
    torch.manual_seed(0)
    return build_rnn(
        name,
        input_size=INPUT,
        hidden_size=HIDDEN,
        num_layers=layers,
        bidirectional=bidirectional,
        **kwargs,
    ).double()


def final_hidden(h_n):
    return h_n[0] if isinstance(h_n, tuple) else h_n


CASES = [
    (name, layers, bidirectional)
    for name, layers, bidirectional in itertools.product(TYPES, [1, 2, 3], [False, True])
]


@pytest.mark.parametrize("name,layers,bidirectional", CASES)
def test_shapes_and_final_state(name, layers, bidirectional):
    rnn = make(name, layers=layers, bidirectional=bidirectional).eval()
    directions = 2 if bidirectional else 1
    for batch in (1, 3):
        x = torch.randn(batch, 7, INPUT, dtype=torch.double)
        out, h_n = rnn(x)
        assert out.shape == (batch, 7, HIDDEN * directions)
        assert final_hidden(h_n).shape == (layers * directions, batch, HIDDEN)
        if isinstance(h_n, tuple):
            assert h_n[1].shape == h_n[0].shape
        # The top layer's final forward state is the last output frame; backward: the first.
        top = final_hidden(h_n)[-directions:]
        torch.testing.assert_close(top[0], out[:, -1, :HIDDEN])
        if bidirectional:
            torch.testing.assert_close(top[1], out[:, 0, HIDDEN:])
    assert rnn.output_size == HIDDEN * directions


@pytest.mark.parametrize("name,layers,bidirectional", CASES)
def test_padding_invariance_matches_each_sequence_alone(name, layers, bidirectional):
    rnn = make(name, layers=layers, bidirectional=bidirectional).eval()
    lengths = torch.tensor([9, 4, 1, 6])
    x = torch.randn(4, 9, INPUT, dtype=torch.double)
    for i, n in enumerate(lengths):
        x[i, n:] = 1e3  # garbage in the padding must not leak anywhere
    out, h_n = rnn(x, lengths=lengths)
    for i, n in enumerate(lengths.tolist()):
        alone, h_alone = rnn(x[i : i + 1, :n])
        torch.testing.assert_close(out[i : i + 1, :n], alone)
        assert (out[i, n:] == 0).all()
        torch.testing.assert_close(final_hidden(h_n)[:, i : i + 1], final_hidden(h_alone))


@pytest.mark.parametrize("name", ["ligru", "sligru"])
@pytest.mark.parametrize(
    "bidirectional,extra", [(False, {}), (True, {}), (True, {"share_directions": True})]
)
def test_padded_frames_never_enter_batchnorm_statistics_in_training(name, bidirectional, extra):
    rnn = make(name, layers=2, bidirectional=bidirectional, **extra).train()
    x = torch.randn(1, 8, INPUT, dtype=torch.double)
    alone, h_alone = rnn(x)
    padded = torch.cat([x, 50 * torch.randn(1, 5, INPUT, dtype=torch.double)], dim=1)
    out, h_n = rnn(padded, lengths=torch.tensor([8]))
    torch.testing.assert_close(out[:, :8], alone)
    torch.testing.assert_close(h_n, h_alone)
    # In a batch, the statistics come from valid frames only: changing padding changes nothing.
    batch = torch.randn(3, 10, INPUT, dtype=torch.double)
    lengths = torch.tensor([10, 6, 3])
    first, _ = rnn(batch, lengths=lengths)
    for i, n in enumerate(lengths.tolist()):
        batch[i, n:] = torch.randn(10 - n, INPUT, dtype=torch.double) * 100
    second, _ = rnn(batch, lengths=lengths)
    torch.testing.assert_close(first, second)


@pytest.mark.parametrize("name,layers", list(itertools.product(TYPES, [1, 3])))
def test_unidirectional_layers_are_causal(name, layers):
    rnn = make(name, layers=layers).eval()
    x = torch.randn(2, 12, INPUT, dtype=torch.double)
    changed = x.clone()
    changed[:, 7:] = torch.randn(2, 5, INPUT, dtype=torch.double)
    torch.testing.assert_close(rnn(x)[0][:, :7], rnn(changed)[0][:, :7])
    assert not torch.allclose(rnn(x)[0][:, 7:], rnn(changed)[0][:, 7:])


@pytest.mark.parametrize("name,layers", list(itertools.product(TYPES, [1, 2, 3])))
def test_two_chunks_carrying_state_equal_one_run(name, layers):
    rnn = make(name, layers=layers).eval()
    x = torch.randn(3, 15, INPUT, dtype=torch.double)
    whole, h_whole = rnn(x)
    first, h_first = rnn(x[:, :6])
    second, h_second = rnn(x[:, 6:], hx=h_first)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)
    torch.testing.assert_close(final_hidden(h_second), final_hidden(h_whole))


@pytest.mark.parametrize("name", TYPES)
def test_eval_mode_is_deterministic_with_dropout(name):
    extra = {"recurrent_dropout": 0.3} if "ligru" in name else {}
    rnn = make(name, layers=2, dropout=0.5, **extra)
    x = torch.randn(2, 6, INPUT, dtype=torch.double)
    rnn.eval()
    torch.testing.assert_close(rnn(x)[0], rnn(x)[0])
    rnn.train()
    assert not torch.allclose(rnn(x)[0], rnn(x)[0])


def test_recurrent_dropout_uses_one_mask_per_sequence_for_all_steps():
    """With U = 0 and z ~ 0 the output is c_t * m = m / (1 - p): the mask shows through."""
    p = 0.4
    rnn = build_rnn(
        "ligru", input_size=3, hidden_size=200, normalization="none", recurrent_dropout=p
    )
    direction = rnn.layers[0][0]
    with torch.no_grad():
        direction.w.weight.zero_()
        direction.w.bias[:200] = -40.0  # z_t ~ 0: h_t = c_t
        direction.w.bias[200:] = 1.0  # c_t = relu(1) * m
        direction.weight_hh.zero_()
    torch.manual_seed(1)
    out, _ = rnn.train()(torch.randn(4, 9, 3))
    kept = out != 0
    assert (kept == kept[:, :1]).all(), "the mask changed between steps"
    assert not (kept[0, 0] == kept[1, 0]).all(), "sequences must get their own masks"
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / (1 - p)))
    assert abs((~kept[:, 0]).float().mean().item() - p) < 0.08
    assert (rnn.eval()(torch.randn(4, 9, 3))[0] != 0).all()


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", ["ligru", "sligru"])
def test_light_gru_parameter_counts_match_equations(name):
    h, i = HIDDEN, INPUT
    per_direction = i * 2 * h + h * 2 * h + 2 * (2 * h)  # W, U, batch-norm scale and shift
    upper = (2 * h) * 2 * h + h * 2 * h + 2 * (2 * h)  # second layer sees [fwd, bwd]
    assert count(make(name, layers=1)) == per_direction
    assert count(make(name, layers=2, bidirectional=True)) == 2 * per_direction + 2 * upper
    shared = make(name, layers=2, bidirectional=True, share_directions=True)
    assert count(shared) == per_direction + upper
    no_norm = make(name, normalization="none")
    assert count(no_norm) == i * 2 * h + 2 * h + h * 2 * h  # W with bias, U


def test_torch_wrapper_parameter_counts_match_equations():
    h, i = HIDDEN, INPUT
    for name, gates in (("rnn", 1), ("gru", 3), ("lstm", 4)):
        assert count(make(name)) == gates * h * (i + h) + 2 * gates * h
        assert count(make(name, bidirectional=True)) == 2 * (gates * h * (i + h) + 2 * gates * h)


@pytest.mark.parametrize("name", TYPES)
def test_recurrent_weights_are_orthogonal(name):
    rnn = build_rnn(name, input_size=INPUT, hidden_size=16, num_layers=2)
    recurrent = [p for n, p in rnn.named_parameters() if "weight_hh" in n]
    assert recurrent
    for weight in recurrent:
        for block in weight.detach().split(16, dim=0):
            torch.testing.assert_close(block.T @ block, torch.eye(16), atol=1e-5, rtol=0)


def test_input_shape_and_errors():
    rnn = build_rnn("gru", input_shape=[8, 100, 40], hidden_size=4)
    assert rnn.input_size == 40
    with pytest.raises(ValueError, match="choose one of"):
        build_rnn("transformer", input_size=4, hidden_size=4)
    with pytest.raises(ValueError, match="input_size or input_shape"):
        build_rnn("ligru", hidden_size=4)
    with pytest.raises(ValueError, match="nonlinearity"):
        build_rnn("ligru", input_size=4, hidden_size=4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="normalization"):
        build_rnn("sligru", input_size=4, hidden_size=4, normalization="groupnorm")
    with pytest.raises(ValueError, match="expected input"):
        rnn(torch.randn(2, 5, 39))
    with pytest.raises(ValueError, match="lengths"):
        rnn(torch.randn(2, 5, 40), lengths=torch.tensor([6, 2]))
    with pytest.raises(TypeError, match="'lstm'"):
        build_rnn("lstm", input_size=4, hidden_size=4, nonlinearity="relu")


def test_public_api():
    assert set(rnnlib.RNN_TYPES) == set(TYPES)
