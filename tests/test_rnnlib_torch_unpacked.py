"""rnnlib's RNN, LSTM and GRU with ``lengths`` run without packing: what packing gave, exactly.

The reference is what the layers did before: ``pack_padded_sequence`` through a ``torch.nn``
module holding the same weights, ``pad_packed_sequence`` back (zeros at padded frames).
"""

import itertools
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlib import build_rnn
from rnnlib.torch_rnn import length_stretches

INPUT, HIDDEN, TIME = 5, 7, 11  # odd sizes
LENGTHS = [TIME, 1, 5, 3, TIME, 10, 5]  # unsorted, ties, a length-1 sequence
TORCH_CLASSES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
CASES = list(itertools.product(TORCH_CLASSES, [1, 2, 3], [False, True]))
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


def make(name, layers, bidirectional, dtype=torch.float64, **options):
    torch.manual_seed(0)
    rnn = build_rnn(
        name,
        input_size=INPUT,
        hidden_size=HIDDEN,
        num_layers=layers,
        bidirectional=bidirectional,
        **options,
    )
    return rnn.to(dtype)


class PackedReference(nn.Module):
    """The previous implementation: one ``torch.nn`` module as ``rnn``, lengths by packing."""

    def __init__(self, name, layers, bidirectional, dropout=0.0):
        super().__init__()
        self.rnn = TORCH_CLASSES[name](
            INPUT, HIDDEN, num_layers=layers, bidirectional=bidirectional, batch_first=True,
            dropout=dropout,
        )  # fmt: skip

    def forward(self, x, lengths, hx=None):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, h_n = self.rnn(packed, hx)
        return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0], h_n


def reference_for(rnn, name, layers, bidirectional, dropout=0.0):
    """A packed reference with its own copy of ``rnn``'s weights (for separate gradients)."""
    reference = PackedReference(name, layers, bidirectional, dropout)
    reference.load_state_dict(rnn.state_dict())
    return reference.to(next(rnn.parameters()).dtype)


def states(h_n):
    return list(h_n) if isinstance(h_n, tuple) else [h_n]


def padded_input(lengths, dtype, garbage=None, time=TIME, seed=1):
    """Random frames; the padded ones hold ``garbage`` (a value or ``"random"``) if given."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), time, INPUT, generator=generator, dtype=dtype)
    for i, n in enumerate(lengths):
        if garbage == "random":
            x[i, n:] = 1e3 * torch.randn(time - n, INPUT, generator=generator, dtype=dtype)
        elif garbage is not None:
            x[i, n:] = garbage
    return x


def run_with_grads(module, x, lengths, hx=None):
    """Outputs, final states, and the gradients w.r.t. the input and every parameter of a loss
    that reads all outputs and final states."""
    x = x.clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    out, h_n = module(x, torch.tensor(lengths), hx)
    weights = torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)
    loss = (out * weights).sum() + sum((h * h).sum() for h in states(h_n))
    loss.backward()
    grads = [x.grad] + [p.grad for p in module.parameters()]
    return out.detach(), [h.detach() for h in states(h_n)], grads


def assert_close(actual, expected, tolerance):
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("name,layers,bidirectional", CASES)
def test_outputs_states_and_gradients_equal_the_packed_path(
    name, layers, bidirectional, training, dtype
):
    rnn = make(name, layers, bidirectional, dtype).train(training)  # dropout 0
    reference = reference_for(rnn, name, layers, bidirectional).train(training)
    x = padded_input(LENGTHS, dtype, garbage="random")
    out, h_n, grads = run_with_grads(rnn, x, LENGTHS)
    ref_out, ref_h_n, ref_grads = run_with_grads(reference, x, LENGTHS)
    tolerance = TOLERANCE[dtype]
    assert_close(out, ref_out, tolerance)
    for h, ref_h in zip(h_n, ref_h_n, strict=True):
        assert_close(h, ref_h, tolerance)
    # Gradients sum over many frames: relative to their size.
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        scale = ref_grad.abs().max().item()
        assert (grad - ref_grad).abs().max().item() <= tolerance * max(scale, 1.0) * 10
    for i, n in enumerate(LENGTHS):  # the packed path's contract at padded frames
        assert (out[i, n:] == 0).all()
        assert (grads[0][i, n:] == 0).all()


@pytest.mark.parametrize("garbage", ["random", float("nan"), float("inf")])
@pytest.mark.parametrize("name,layers,bidirectional", CASES)
def test_padded_frames_change_nothing_not_even_gradients(name, layers, bidirectional, garbage):
    """Padded frames are never read: with garbage, even NaN, everything is bit for bit the same."""
    rnn = make(name, layers, bidirectional).train()
    clean = run_with_grads(rnn, padded_input(LENGTHS, torch.float64, garbage=0.0), LENGTHS)
    dirty = run_with_grads(rnn, padded_input(LENGTHS, torch.float64, garbage), LENGTHS)
    for clean_part, dirty_part in zip(clean, dirty, strict=True):
        for a, b in zip(clean_part, dirty_part, strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name,layers,bidirectional", CASES)
def test_initial_state_and_sorted_batches_and_trailing_padding(name, layers, bidirectional):
    rnn = make(name, layers, bidirectional).eval()
    reference = reference_for(rnn, name, layers, bidirectional).eval()
    rows = layers * (2 if bidirectional else 1)
    lengths = [9, 9, 6, 2, 1]  # longest first: no reordering; the longest ends before TIME
    x = padded_input(lengths, torch.float64, garbage="random")
    hx = torch.randn(rows, len(lengths), HIDDEN, dtype=torch.float64)
    hx = (hx, torch.randn_like(hx)) if name == "lstm" else hx
    for given in (None, hx):
        out, h_n = rnn(x, torch.tensor(lengths), given)
        ref_out, ref_h_n = reference(x, torch.tensor(lengths), given)
        assert_close(out, ref_out, 1e-12)
        assert out.shape == (len(lengths), TIME, HIDDEN * (2 if bidirectional else 1))
        for h, ref_h in zip(states(h_n), states(ref_h_n), strict=True):
            assert_close(h, ref_h, 1e-12)
    # The same initial state, sequences shuffled: each keeps its own.
    shuffle = torch.tensor([3, 0, 4, 2, 1])
    hx_shuffled = tuple(h[:, shuffle] for h in hx) if name == "lstm" else hx[:, shuffle]
    out, h_n = rnn(x[shuffle], torch.tensor(lengths)[shuffle], hx_shuffled)
    ref_out, ref_h_n = reference(x, torch.tensor(lengths), hx)
    assert_close(out, ref_out[shuffle], 1e-12)
    for h, ref_h in zip(states(h_n), states(ref_h_n), strict=True):
        assert_close(h, ref_h[:, shuffle], 1e-12)


@pytest.mark.parametrize("lengths", [[TIME], [1], [1, 1, 1], [TIME] * 4, [4, 4, 4]])
@pytest.mark.parametrize("name,bidirectional", list(itertools.product(TORCH_CLASSES, [0, 1])))
def test_one_sequence_length_one_and_equal_lengths(name, bidirectional, lengths):
    rnn = make(name, 2, bool(bidirectional)).eval()
    reference = reference_for(rnn, name, 2, bool(bidirectional)).eval()
    x = padded_input(lengths, torch.float64, garbage="random")
    out, h_n = rnn(x, torch.tensor(lengths))
    ref_out, ref_h_n = reference(x, torch.tensor(lengths))
    assert_close(out, ref_out, 1e-12)
    for h, ref_h in zip(states(h_n), states(ref_h_n), strict=True):
        assert_close(h, ref_h, 1e-12)
    if lengths == [TIME] * len(lengths):  # nothing padded: what the module gives without lengths
        plain_out, plain_h_n = rnn(x)
        assert_close(out, plain_out, 1e-12)
        for h, plain_h in zip(states(h_n), states(plain_h_n), strict=True):
            assert_close(h, plain_h, 1e-12)


@pytest.mark.parametrize("name,bidirectional", list(itertools.product(TORCH_CLASSES, [0, 1])))
def test_dropout_falls_between_layers_only_as_torchs(name, bidirectional):
    """With p = 1 torch's dropout zeros every layer's output but the last: so must ours."""
    bidirectional = bool(bidirectional)
    x = padded_input(LENGTHS, torch.float64)
    for layers in (1, 3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch: dropout with one layer
            rnn = make(name, layers, bidirectional, dropout=1.0).train()
            reference = reference_for(rnn, name, layers, bidirectional, dropout=1.0).train()
        out, h_n = rnn(x, torch.tensor(LENGTHS))
        ref_out, ref_h_n = reference(x, torch.tensor(LENGTHS))
        assert_close(out, ref_out, 1e-12)
        for h, ref_h in zip(states(h_n), states(ref_h_n), strict=True):
            assert_close(h, ref_h, 1e-12)
        assert (out[0] != 0).any()  # no dropout after the last layer
        if layers > 1:  # the top layer read zeros: its output is the same for any input
            other = rnn(padded_input(LENGTHS, torch.float64, seed=7), torch.tensor(LENGTHS))[0]
            assert_close(out, other, 1e-12)
    rnn = make(name, 3, bidirectional, dropout=0.5).train()
    first, second = (rnn(x, torch.tensor(LENGTHS))[0] for _ in range(2))
    assert not torch.allclose(first, second)  # random masks in training
    rnn.eval()
    assert torch.equal(rnn(x, torch.tensor(LENGTHS))[0], rnn(x, torch.tensor(LENGTHS))[0])


# What the state dict of each wrapper held before the unpacked route (2 bidirectional layers,
# input 5, hidden 7): torch's own parameters under "rnn.", nothing else.
def old_keys(gates):
    keys = {}
    for layer, suffix in itertools.product((0, 1), ("", "_reverse")):
        width = INPUT if layer == 0 else 2 * HIDDEN
        keys[f"rnn.weight_ih_l{layer}{suffix}"] = (gates * HIDDEN, width)
        keys[f"rnn.weight_hh_l{layer}{suffix}"] = (gates * HIDDEN, HIDDEN)
        keys[f"rnn.bias_ih_l{layer}{suffix}"] = (gates * HIDDEN,)
        keys[f"rnn.bias_hh_l{layer}{suffix}"] = (gates * HIDDEN,)
    return keys


STATE_DICT_KEYS = [
    "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
    "rnn.weight_ih_l0_reverse", "rnn.weight_hh_l0_reverse", "rnn.bias_ih_l0_reverse",
    "rnn.bias_hh_l0_reverse",
    "rnn.weight_ih_l1", "rnn.weight_hh_l1", "rnn.bias_ih_l1", "rnn.bias_hh_l1",
    "rnn.weight_ih_l1_reverse", "rnn.weight_hh_l1_reverse", "rnn.bias_ih_l1_reverse",
    "rnn.bias_hh_l1_reverse",
]  # fmt: skip


@pytest.mark.parametrize("name,gates", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_state_dict_is_unchanged_and_old_state_dicts_load(name, gates, tmp_path):
    rnn = make(name, 2, True, torch.float32)
    state = rnn.state_dict()
    assert list(state) == STATE_DICT_KEYS
    assert {k: tuple(v.shape) for k, v in state.items()} == old_keys(gates)
    torch.manual_seed(5)
    old = PackedReference(name, 2, True)  # what the old code saved
    torch.save(old.state_dict(), tmp_path / "old.pt")
    rnn.load_state_dict(torch.load(tmp_path / "old.pt", weights_only=True))  # strict
    x = padded_input(LENGTHS, torch.float32)
    out, h_n = rnn.eval()(x, torch.tensor(LENGTHS))
    ref_out, ref_h_n = old.eval()(x, torch.tensor(LENGTHS))
    assert_close(out, ref_out, 1e-5)
    for h, ref_h in zip(states(h_n), states(ref_h_n), strict=True):
        assert_close(h, ref_h, 1e-5)


@pytest.mark.parametrize("options", [{"bias": False}, {"proj_size": 3}])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_torch_options_without_biases_or_with_projections(options, bidirectional):
    torch.manual_seed(0)
    rnn = build_rnn("lstm", input_size=INPUT, hidden_size=HIDDEN, num_layers=2,
                    bidirectional=bidirectional, **options).double().eval()  # fmt: skip
    x = padded_input(LENGTHS, torch.float64, garbage="random")
    out, h_n = rnn(x, torch.tensor(LENGTHS))
    packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    ref_out, ref_h_n = rnn.rnn(packed)
    ref_out = pad_packed_sequence(ref_out, batch_first=True, total_length=TIME)[0]
    assert_close(out, ref_out, 1e-12)
    for h, ref_h in zip(states(h_n), states(ref_h_n), strict=True):
        assert_close(h, ref_h, 1e-12)


def test_stretches_follow_the_distinct_lengths():
    assert length_stretches([4]) == [(0, 4, 1)]
    assert length_stretches([6, 6, 6]) == [(0, 6, 3)]
    assert length_stretches([9, 7, 7, 2, 1]) == [(0, 1, 5), (1, 2, 4), (2, 7, 3), (7, 9, 1)]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_runs_under_torch_compile(name):
    """Compiled models (the recipe's compile=true) keep the route, run eagerly: inductor's LSTM
    decomposition would fail on features that need no gradient."""
    rnn = make(name, 2, True, torch.float32).train()
    reference = reference_for(rnn, name, 2, True).train()
    output = nn.Linear(2 * HIDDEN, 3)

    def model(module, x, lengths):
        return output(module(x, lengths)[0]).log_softmax(-1)

    compiled = torch.compile(model, dynamic=True)
    for lengths in (LENGTHS, [TIME] * 3, [4, 9, 2]):
        x = padded_input(lengths, torch.float32)  # features: no gradient
        out = compiled(rnn, x, torch.tensor(lengths))
        out.sum().backward()
        assert_close(out, model(reference, x, torch.tensor(lengths)), 1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name,layers,bidirectional", CASES)
def test_cuda_equals_the_packed_path_without_warnings(name, layers, bidirectional):
    rnn = make(name, layers, bidirectional, torch.float32).cuda().train()
    reference = reference_for(rnn, name, layers, bidirectional).cuda().train()
    x = padded_input(LENGTHS, torch.float32, garbage="random").cuda()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, h_n = rnn(x, torch.tensor(LENGTHS))
        (out.sum() + sum(h.sum() for h in states(h_n))).backward()
    ref_out, ref_h_n = reference(x, torch.tensor(LENGTHS))
    assert_close(out, ref_out, 1e-4)
    for h, ref_h in zip(states(h_n), states(ref_h_n), strict=True):
        assert_close(h, ref_h, 1e-4)
