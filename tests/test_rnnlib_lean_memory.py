"""What the Light GRU keeps for its backward, the masked batch norm it uses, and the layouts."""

import pytest
import torch

from rnnlib import LiGRU, SLiGRU
from rnnlib.ligru.layout import LAYOUTS, output_from_states, states_from_output
from rnnlib.ligru.masked_norm import MaskedBatchNorm1d


def valid_frames(x, lengths):
    return torch.cat([x[i, :n] for i, n in enumerate(lengths.tolist())])


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("lengths", [[10, 10, 10], [10, 4, 7]])
def test_masked_batch_norm_equals_batch_norm_of_the_valid_frames(lengths, momentum):
    torch.manual_seed(0)
    lengths = torch.tensor(lengths)
    mask = torch.arange(10).unsqueeze(0) < lengths.unsqueeze(1)
    x = torch.randn(3, 10, 6, dtype=torch.double, requires_grad=True)
    masked = MaskedBatchNorm1d(6, momentum=momentum).double()
    plain = torch.nn.BatchNorm1d(6, momentum=momentum).double()
    with torch.no_grad():
        masked.weight.uniform_(0.5, 2.0)
        masked.bias.uniform_(-1.0, 1.0)
        plain.load_state_dict(masked.state_dict())
    weights = torch.randn(int(lengths.sum()), 6, dtype=torch.double)
    for _ in range(2):  # two steps: running statistics accumulate alike
        y = masked(x, mask)
        expected = plain(valid_frames(x, lengths))
        torch.testing.assert_close(valid_frames(y, lengths), expected)
        assert (y[~mask] == 0).all()
        got = torch.autograd.grad((valid_frames(y, lengths) * weights).sum(), [x, masked.weight])
        want = torch.autograd.grad((expected * weights).sum(), [x, plain.weight])
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w)
    torch.testing.assert_close(masked.running_mean, plain.running_mean)
    torch.testing.assert_close(masked.running_var, plain.running_var)
    masked.eval(), plain.eval()
    torch.testing.assert_close(
        valid_frames(masked(x, mask), lengths), plain(valid_frames(x, lengths))
    )


def test_masked_batch_norm_gradcheck():
    mask = torch.tensor([[True] * 5, [True] * 2 + [False] * 3])
    x = torch.randn(2, 5, 3, dtype=torch.double, requires_grad=True)
    bn = MaskedBatchNorm1d(3).double()
    assert torch.autograd.gradcheck(lambda v: bn(v, mask), (x,))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("padded", [False, True])
def test_states_come_back_from_the_output(layout, padded):
    batch, time, hidden = 3, 7, 4
    directions, rows = {"stacked": (2, batch), "bidirectional": (2, batch)}.get(
        layout, (1, 2 * batch)
    )
    states = torch.randn(directions, time, rows, hidden)
    lengths = torch.tensor([7, 3, 5] if padded else [7, 7, 7]).repeat(rows // batch)
    mask = torch.arange(time).unsqueeze(0) < lengths.unsqueeze(1) if padded else None
    output = output_from_states(states, mask, layout)
    back = states_from_output(output, mask, layout, into=torch.full_like(states, float("nan")))
    valid = torch.ones(time, rows, dtype=torch.bool) if mask is None else mask.t()
    torch.testing.assert_close(back[:, valid], states[:, valid], rtol=0, atol=0)
    assert (back[:, ~valid] == 0).all()
    if layout != "stacked":  # padded frames of a layer's output are zero
        assert output.shape == (batch, time, 2 * hidden)
        if mask is not None:
            assert (output[~mask[:batch]] == 0).all()


def saved_bytes(model, x, lengths):
    """Bytes of the distinct storages autograd keeps from one training forward."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x, lengths=lengths)
    return sum(storages.values())


@pytest.mark.parametrize("cls", [LiGRU, SLiGRU])
@pytest.mark.parametrize("lengths", [None, [40, 25, 31, 12]])
def test_backward_keeps_only_x_hat_and_each_layers_output(cls, lengths):
    """Per layer and direction the backward holds ``x_hat [B, T, 2H]``; per layer the output
    ``[B, T, 2H]`` (also the next layer's input): 3 of 4 copies of the gates' size that a
    kernel saving ``W x``, ``a``, the pre-activations and the states would need are gone. A
    ReLU Light GRU also keeps the sign of each candidate pre-activation (one byte per unit)."""
    batch, time, features, hidden, layers = 4, 40, 10, 32, 3
    model = cls(hidden, input_size=features, num_layers=layers, bidirectional=True).train()
    x = torch.randn(batch, time, features)
    lengths = None if lengths is None else torch.tensor(lengths)
    frame = batch * time * 4  # bytes of one float32 feature over every frame
    expected = layers * (2 * 2 * hidden + 2 * hidden) * frame + features * frame
    if cls is LiGRU:
        expected += layers * 2 * hidden * batch * time
    weights = sum(p.numel() * 4 for p in model.parameters())  # saved once, maybe stacked once
    small = 2 * weights + 16 * 1024  # and statistics, masks, h0
    assert saved_bytes(model, x, lengths) <= expected + small
