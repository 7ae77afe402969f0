"""The Light GRU's product routes: a fixed rule (never timing), and the same values either way."""

import time

import pytest
import torch
import torch.nn.functional as F

from rnnlib import LiGRU, SLiGRU
from rnnlib.ligru import products
from rnnlib.ligru.products import force_route, linear, product_route
from rnnlib.torch_internals import onednn_linear_available

needs_onednn = pytest.mark.skipif(not onednn_linear_available(), reason="this build has no oneDNN")


def values_and_grads(x, weight, bias):
    out = linear(x, weight, bias)
    weights = torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view_as(out)
    inputs = [t for t in (x, weight, bias) if t is not None]
    return out, *torch.autograd.grad((out * weights).sum(), inputs)


@needs_onednn
@pytest.mark.parametrize("bias", [False, True])
def test_onednn_route_matches_functional_linear(bias, monkeypatch):
    torch.manual_seed(0)
    x = torch.randn(3, 17, 24, requires_grad=True)
    weight = torch.randn(40, 24, requires_grad=True)
    b = torch.randn(40, requires_grad=True) if bias else None
    taken = []
    real = products.onednn_product
    monkeypatch.setattr(products, "onednn_product", lambda *a: taken.append(1) or real(*a))
    with force_route("onednn"):
        fast = values_and_grads(x, weight, b)
    assert taken  # the oneDNN route was the one taken
    taken.clear()
    with force_route("blas"):
        plain = values_and_grads(x, weight, b)
    assert not taken
    for got, expected in zip(fast, plain, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast[0], F.linear(x, weight, b), rtol=1e-4, atol=1e-4)


@needs_onednn
def test_weight_only_gradient_when_the_input_needs_none():
    x = torch.randn(2, 5, 8)
    weight = torch.randn(6, 8, requires_grad=True)
    with force_route("onednn"):
        (grad,) = torch.autograd.grad(linear(x, weight).sum(), weight)
    torch.testing.assert_close(grad, torch.ones(6, 10) @ x.reshape(10, 8))


def test_float64_and_autocast_keep_torch_route():
    with force_route("onednn"):
        x64, w64 = torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
        assert product_route(torch.float64) == "blas"
        assert torch.equal(linear(x64, w64), F.linear(x64, w64))
        x, w = torch.randn(2, 3, 4), torch.randn(5, 4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert linear(x, w).dtype == torch.bfloat16  # autocast's own linear ran


@needs_onednn
@pytest.mark.parametrize(
    ("vendor", "avx512", "deterministic", "expected"),
    [
        ("AuthenticAMD", True, False, "onednn"),
        ("AuthenticAMD", False, False, "blas"),
        ("GenuineIntel", True, False, "blas"),
        ("unknown", False, False, "blas"),
        ("AuthenticAMD", True, True, "blas"),
    ],
)
def test_route_rule_depends_on_cpu_and_determinism_only(
    monkeypatch, vendor, avx512, deterministic, expected
):
    monkeypatch.setattr(products, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(products, "cpu_has_avx512", lambda: avx512)
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: deterministic)
    assert product_route(torch.float32) == expected
    bf16 = "blas" if deterministic or not onednn_linear_available(torch.bfloat16) else "onednn"
    assert products.describe_routes() == {
        "cpu_vendor": vendor,
        "avx512": avx512,
        "deterministic": deterministic,
        "float32": expected,
        "bfloat16": bf16,
    }


def test_route_never_reads_a_clock(monkeypatch):
    """A slow machine and a fast one take the same route: no timing anywhere in the choice."""

    def no_clock():
        raise AssertionError("the product route read a clock")

    monkeypatch.setattr(time, "perf_counter", no_clock)
    monkeypatch.setattr(time, "time", no_clock)
    rnn = LiGRU(16, input_size=6, num_layers=2, bidirectional=True)
    out, _ = rnn(torch.randn(3, 20, 6), lengths=torch.tensor([20, 9, 14]))
    out.sum().backward()
    assert product_route() in products.ROUTES


def test_force_route_rejects_unknown_names_and_restores():
    before = product_route()
    with pytest.raises(ValueError, match="unknown product route 'mkl'"):
        with force_route("mkl"):
            pass
    with force_route("blas"):
        assert product_route() == "blas"
    assert product_route() == before


@needs_onednn
@pytest.mark.parametrize("cls", [LiGRU, SLiGRU])
def test_layers_agree_across_routes(cls):
    """Projection, input gradient and the backward's rebuilt products through oneDNN or not."""
    torch.manual_seed(0)
    rnn = cls(16, input_size=6, num_layers=2, bidirectional=True)
    x = torch.randn(3, 20, 6, requires_grad=True)
    lengths = torch.tensor([20, 9, 14])

    def run():
        out, h_n = rnn(x, lengths=lengths)
        loss = (out * torch.cos(torch.arange(out.numel())).view_as(out)).sum() + h_n.sum()
        return out, *torch.autograd.grad(loss, [x, *rnn.parameters()])

    with force_route("onednn"):
        fast = run()
    with force_route("blas"):
        plain = run()
    for got, expected in zip(fast, plain, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_same_inputs_same_bits_run_after_run():
    torch.manual_seed(0)
    rnn = LiGRU(32, input_size=8, num_layers=2, bidirectional=True)
    x = torch.randn(4, 30, 8)
    lengths = torch.tensor([30, 21, 9, 30])
    first = rnn(x, lengths=lengths)[0]
    for _ in range(3):
        assert torch.equal(rnn(x, lengths=lengths)[0], first)
