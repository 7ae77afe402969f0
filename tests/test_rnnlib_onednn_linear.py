"""The projection through oneDNN against torch.nn.functional.linear: same values and gradients."""

import pytest
import torch
import torch.nn.functional as F

from rnnlib import LiGRU, SLiGRU, onednn_linear
from rnnlib.onednn_linear import linear

needs_onednn = pytest.mark.skipif(
    not onednn_linear.onednn_linear_available(), reason="this build has no oneDNN"
)


@pytest.fixture
def route(monkeypatch):
    """Force a route for every shape: ``route(True)`` oneDNN, ``route(False)`` the BLAS."""
    forced = {}

    def force(use_onednn):
        forced["value"] = use_onednn
        monkeypatch.setattr(onednn_linear, "_onednn_is_faster", lambda x, weight: forced["value"])
        monkeypatch.setattr(onednn_linear, "_route_cache", {})

    return force


def values_and_grads(x, weight, bias):
    out = linear(x, weight, bias)
    weights = torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view_as(out)
    inputs = [t for t in (x, weight, bias) if t is not None]
    return out, *torch.autograd.grad((out * weights).sum(), inputs)


@needs_onednn
@pytest.mark.parametrize("bias", [False, True])
def test_onednn_route_matches_functional_linear(route, bias):
    torch.manual_seed(0)
    x = torch.randn(3, 17, 24, requires_grad=True)
    weight = torch.randn(40, 24, requires_grad=True)
    b = torch.randn(40, requires_grad=True) if bias else None
    route(True)
    fast = values_and_grads(x, weight, b)
    assert onednn_linear._route_cache  # the oneDNN route was the one taken
    route(False)
    plain = values_and_grads(x, weight, b)
    for got, expected in zip(fast, plain, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    expected_out = F.linear(x, weight, b)
    torch.testing.assert_close(fast[0], expected_out, rtol=1e-4, atol=1e-4)


@needs_onednn
def test_weight_only_gradient_when_the_input_needs_none(route):
    route(True)
    x = torch.randn(2, 5, 8)
    weight = torch.randn(6, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(linear(x, weight).sum(), weight)
    torch.testing.assert_close(grad, torch.ones(6, 10) @ x.reshape(10, 8))


def test_float64_and_autocast_keep_torch_route(route):
    route(True)
    x64, w64 = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    assert torch.equal(linear(x64, w64), F.linear(x64, w64))
    x, w = torch.randn(2, 3, 4), torch.randn(5, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear(x, w).dtype == torch.bfloat16  # autocast's own linear ran
    assert not onednn_linear._route_cache


@needs_onednn
def test_calibration_times_both_routes_once_per_shape(monkeypatch):
    monkeypatch.setattr(onednn_linear, "_route_cache", {})
    calls = []
    real = onednn_linear._onednn_is_faster

    def counting(x, weight):
        calls.append(tuple(weight.shape))
        return real(x, weight)

    monkeypatch.setattr(onednn_linear, "_onednn_is_faster", counting)
    weight = torch.randn(12, 8)
    for _ in range(3):
        linear(torch.randn(4, 9, 8), weight)
    assert calls == [(12, 8)]
    assert isinstance(onednn_linear._route_cache[(12, 8, torch.get_num_threads())], bool)


@needs_onednn
@pytest.mark.parametrize("cls", [LiGRU, SLiGRU])
def test_layers_agree_across_routes(route, cls):
    """Projection, input gradient and the backward's rebuilt products through oneDNN or not."""
    torch.manual_seed(0)
    rnn = cls(16, input_size=6, num_layers=2, bidirectional=True)
    x = torch.randn(3, 20, 6, requires_grad=True)
    lengths = torch.tensor([20, 9, 14])

    def run():
        out, h_n = rnn(x, lengths=lengths)
        loss = (out * torch.cos(torch.arange(out.numel())).view_as(out)).sum() + h_n.sum()
        return out, *torch.autograd.grad(loss, [x, *rnn.parameters()])

    route(True)
    fast = run()
    assert any(onednn_linear._route_cache.values())
    route(False)
    for got, expected in zip(fast, run(), strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
