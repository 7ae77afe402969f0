"""The Triton loop route of the Light GRU against the float64 reference recurrence.

Without CUDA the kernels run on CPU tensors in Triton's interpreter (``TRITON_INTERPRET=1``, set
by ``tests/conftest.py`` before anything imports Triton); with CUDA they run compiled on the device.
"""

import logging
import os
import subprocess
import sys

import pytest
import torch

from rnnlib import LiGRU, SLiGRU
from rnnlib.ligru import loop_route
from rnnlib.ligru.loop_route import force_loop_route
from rnnlib.ligru.recurrence import NONLINEARITIES, ligru_recurrence_directions
from tests.test_rnnlib_fast_kernel import assert_close, layer_outputs_and_grads

pytestmark = pytest.mark.triton
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def triton_route(monkeypatch):
    if DEVICE == "cpu" and not loop_route.interpreting():
        pytest.skip("TRITON_INTERPRET was turned off before this module was imported")
    steps = loop_route.triton_steps()
    if steps is None:
        pytest.fail("Triton does not import here, but it is part of the locked environment")
    if DEVICE == "cpu":  # the interpreter runs dead steps as slowly as live ones: short chunks
        monkeypatch.setattr(steps, "STEPS_PER_CHUNK", 4)  # (any size gives the same bits: below)
    with force_loop_route("triton"):
        yield


def random_inputs(batch, time, hidden, lengths, drop, directions, seed=0):
    """float64 leaves: ``D`` inputs ``a``, ``D`` weights ``U``, ``h0 [D, B, H]``, mask, drop."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        values = torch.randn(*shape, generator=generator, dtype=torch.float64) * scale
        return values.requires_grad_()

    inputs = [randn(batch, time, 2 * hidden) for _ in range(directions)]
    weights = [randn(2 * hidden, hidden, scale=0.8 / hidden**0.5) for _ in range(directions)]
    h0 = randn(directions, batch, hidden)
    mask = None
    if lengths is not None:
        mask = torch.arange(time).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    drop_mask = None
    if drop:
        keep = torch.rand(directions, batch, hidden, generator=generator) > 0.3
        drop_mask = keep.to(torch.float64) / 0.7
    return inputs, weights, h0, mask, drop_mask


def run_recurrence(leaves, nonlinearity, norm, dtype, reference=False):
    """Outputs, final states and the gradients of every ``a``, ``U`` and ``h0``, in float64."""
    inputs, weights, h0, mask, drop_mask = leaves

    def cast(t):
        return t.detach().to(DEVICE, dtype).requires_grad_()

    inputs, weights, h0 = [cast(a) for a in inputs], [cast(w) for w in weights], cast(h0)
    drop = None if drop_mask is None else drop_mask.to(DEVICE, dtype)
    out, h_n = ligru_recurrence_directions(
        inputs, weights, h0, None if mask is None else mask.to(DEVICE), nonlinearity, norm, drop,
        reference=reference,
    )  # fmt: skip
    weights_out = torch.cos(torch.arange(out.numel(), dtype=dtype, device=DEVICE))
    loss = (out * weights_out.view_as(out)).sum() + (h_n * h_n).sum()
    grads = torch.autograd.grad(loss, [*inputs, *weights, h0])
    return [t.detach().cpu().double() for t in (out, h_n, *grads)]


def check_against_reference(leaves, nonlinearity, norm):
    got = run_recurrence(leaves, nonlinearity, norm, torch.float32)
    with force_loop_route("torch"):
        expected = run_recurrence(leaves, nonlinearity, norm, torch.float64, reference=True)
    for index, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert_close(g, e, torch.float32, msg=f"result {index}")
    return got


@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_every_option_matches_the_float64_reference(nonlinearity, norm, drop):
    """Both directions with separate weights, unsorted lengths (one of length 1), dropout."""
    leaves = random_inputs(3, 7, 7, [5, 1, 7], drop, directions=2)
    check_against_reference(leaves, nonlinearity, norm)


SHAPES = [  # (batch, time, hidden, lengths): batch 1 / 3 / 17, length 1, odd hidden sizes
    (1, 1, 7, None),
    (17, 4, 7, [4, 1, 3, 2, 4, 4, 1, 2, 3, 3, 4, 1, 1, 2, 4, 3, 2]),
    (3, 3, 100, [2, 3, 1]),
]


@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:3])))
def test_odd_shapes_match_the_float64_reference(shape, norm):
    batch, time, hidden, lengths = shape
    leaves = random_inputs(batch, time, hidden, lengths, drop=False, directions=1, seed=3)
    check_against_reference(leaves, "tanh", norm)


def test_backward_crosses_chunks():
    """More steps than one backward chunk (64 coefficients at a time), SLi-GRU, padding."""
    leaves = random_inputs(2, 70, 3, [70, 66], drop=True, directions=1, seed=4)
    check_against_reference(leaves, "relu", True)


@pytest.mark.parametrize("norm", [False, True])
def test_any_chunk_size_gives_the_same_bits(norm, monkeypatch):
    """Lengths that are not a multiple of the chunk (dead steps forward, and backward at both
    ends of a 64-step coefficient chunk): the chunking changes nothing, bit for bit."""
    steps = loop_route.triton_steps()
    leaves = random_inputs(2, 67, 5, [67, 30], drop=True, directions=1, seed=6)
    results = {}
    for per_chunk in (16, 6):
        monkeypatch.setattr(steps, "STEPS_PER_CHUNK", per_chunk)
        results[per_chunk] = run_recurrence(leaves, "relu", norm, torch.float32)
    for a, b in zip(results[16], results[6], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("norm", [False, True])
def test_padding_changes_nothing_and_results_repeat_bit_for_bit(norm):
    leaves = random_inputs(3, 6, 7, [6, 2, 4], drop=True, directions=2, seed=5)
    inputs, weights, h0, mask, drop_mask = leaves
    first = run_recurrence(leaves, "leaky_relu", norm, torch.float32)
    again = run_recurrence(leaves, "leaky_relu", norm, torch.float32)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    noisy = [a.detach().masked_fill(~mask.unsqueeze(-1), 1e3).requires_grad_() for a in inputs]
    noisy_run = run_recurrence(
        (noisy, weights, h0, mask, drop_mask), "leaky_relu", norm, torch.float32
    )
    valid = mask.unsqueeze(-1)
    out, noisy_out = first[0], noisy_run[0]
    assert torch.equal(out[:, valid.expand(-1, -1, 7)], noisy_out[:, valid.expand(-1, -1, 7)])
    assert (noisy_out[:, ~mask] == 0).all()
    for a, b in zip(first[1:], noisy_run[1:], strict=True):  # h_n and every gradient
        if a.shape[-1] == 14 and a.dim() == 3:  # grad of a: valid frames only (padded: zero)
            assert torch.equal(a[valid.expand_as(a)], b[valid.expand_as(b)])
            assert (b[~mask] == 0).all()
        else:
            assert torch.equal(a, b)


LAYERS = [
    (cls, bidirectional, share, normalization)
    for cls in (LiGRU, SLiGRU)
    for bidirectional, share in ((False, False), (True, False), (True, True))
    for normalization in ("batchnorm", "layernorm")
]


@pytest.mark.parametrize("config", LAYERS, ids=lambda c: "-".join(str(v) for v in c[1:]))
def test_layers_match_the_float64_reference(config):
    """Every layout: outputs, ``h_n`` and the gradients of ``x``, ``hx`` and every parameter."""
    cls, bidirectional, share, normalization = config
    torch.manual_seed(0)
    rnn = cls(
        input_size=5, hidden_size=7, num_layers=2, nonlinearity="relu", bidirectional=bidirectional,
        share_directions=share, normalization=normalization,
    ).double()  # fmt: skip
    x = torch.randn(3, 6, 5, dtype=torch.float64, requires_grad=True)
    hx = torch.randn(2 * rnn.num_directions, 3, 7, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 6, 1])
    rnn.reference_recurrence = True
    expected = layer_outputs_and_grads(rnn, x, lengths, hx)
    rnn.reference_recurrence = False
    rnn = rnn.to(DEVICE, torch.float32)
    x32, hx32 = (t.detach().to(DEVICE, torch.float32).requires_grad_() for t in (x, hx))
    got = layer_outputs_and_grads(rnn, x32, lengths, hx32)
    for index, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert_close(g.cpu().double(), e, torch.float32, msg=f"result {index}")


@pytest.mark.parametrize("cls", [LiGRU, SLiGRU])
def test_half_precision_products_keep_float32_states(cls):
    """Autocast's products in float16 (the interpreter has no bfloat16), states in float32."""
    torch.manual_seed(0)
    rnn = cls(input_size=5, hidden_size=20, bidirectional=True).to(DEVICE)
    x = torch.randn(4, 6, 5, device=DEVICE)
    lengths = torch.tensor([6, 3, 5, 1])
    expected, _ = rnn(x, lengths=lengths)
    with torch.autocast(DEVICE, dtype=torch.float16):
        out, _ = rnn(x, lengths=lengths)
        out.sum().backward()
    assert out.dtype == torch.float32
    error = (out - expected).abs()
    assert error.max() < 0.02 and error.mean() < 0.002
    assert error.max() > 0  # the products did run in float16
    assert all(torch.isfinite(p.grad).all() for p in rnn.parameters())


def test_forced_route_needs_a_device_or_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    if DEVICE == "cpu":
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
            loop_route.loop_route(torch.device("cpu"), torch.float32)
    with pytest.raises(RuntimeError, match="float32 states"):
        loop_route.loop_route(torch.device("cuda"), torch.float64)


@pytest.mark.skipif(DEVICE == "cuda", reason="the interpreter's import order matters on CPU only")
def test_setting_the_interpreter_after_importing_triton_names_the_fix():
    script = (
        "import os, torch, triton.language\n"
        "os.environ['TRITON_INTERPRET'] = '1'\n"
        "from rnnlib.ligru.loop_route import force_loop_route, loop_route\n"
        "with force_loop_route('triton'):\n"
        "    loop_route(torch.device('cpu'), torch.float32)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "set it in the environment before starting Python" in result.stderr


def test_the_first_use_on_a_device_checks_the_kernels_once(monkeypatch, caplog):
    steps = loop_route.triton_steps()
    forward_loop = steps.forward_loop
    device = torch.device(DEVICE)

    def broken(*args, **kwargs):
        raise RuntimeError("no C compiler for the launcher")

    def wrong(gates, states, *args, **kwargs):
        forward_loop(gates, states, *args, **kwargs)
        states[:, -1] += 1e-3

    with caplog.at_level(logging.WARNING, logger="rnnlib.ligru.loop_route"):
        for patch, runs, message in [(None, True, None), (broken, False, "no C compiler"),
                                     (wrong, False, "differ from the reference")]:
            monkeypatch.setattr(loop_route, "_runs", {})
            if patch is not None:
                monkeypatch.setattr(steps, "forward_loop", patch)
            caplog.clear()
            assert loop_route.triton_runs(device) is runs
            assert loop_route.triton_runs(device) is runs  # checked once: one line at most
            lines = [r.getMessage() for r in caplog.records]
            assert lines == [] if message is None else len(lines) == 1 and message in lines[0]


def test_the_rule_and_the_environment_variable(monkeypatch):
    monkeypatch.setattr(loop_route, "triton_runs", lambda device: True)
    monkeypatch.setattr(loop_route, "cpp_runs", lambda: False)  # (tests/test_rnnlib_cpp_loops.py)
    with force_loop_route(None):
        assert loop_route.loop_route(torch.device("cpu"), torch.float32) == "torch"
        assert loop_route.loop_route(torch.device("cuda"), torch.float64) == "torch"
        assert loop_route.loop_route(torch.device("cuda"), torch.float32) == "triton"
        monkeypatch.setenv("RNNLIB_LIGRU_LOOP", "torch")
        assert loop_route.loop_route(torch.device("cuda"), torch.float32) == "torch"
        monkeypatch.setenv("RNNLIB_LIGRU_LOOP", "cudnn")
        with pytest.raises(ValueError, match="RNNLIB_LIGRU_LOOP.*'cudnn'"):
            loop_route.loop_route(torch.device("cuda"), torch.float32)


def test_a_host_without_triton_falls_back_with_one_log_line(monkeypatch, caplog):
    monkeypatch.setattr(loop_route, "_triton", None)
    monkeypatch.setattr(loop_route, "_triton_error", None)
    monkeypatch.delitem(sys.modules, "rnnlib.ligru.triton_steps", raising=False)
    monkeypatch.setitem(sys.modules, "triton", None)  # import triton now raises ImportError
    with force_loop_route(None), caplog.at_level(logging.WARNING, logger=loop_route.__name__):
        assert loop_route.loop_route(torch.device("cuda"), torch.float32) == "torch"
        assert loop_route.loop_route(torch.device("cuda"), torch.float32) == "torch"
    assert len(caplog.records) == 1
    assert "Triton is unavailable" in caplog.text and "PyTorch operators" in caplog.text
    with pytest.raises(RuntimeError, match="forced"):
        loop_route.loop_route(torch.device("cuda"), torch.float32)


needs_cuda = pytest.mark.skipif(DEVICE != "cuda", reason="CUDA graphs need a CUDA device")


@needs_cuda
@pytest.mark.parametrize("norm", [False, True])
def test_graph_replays_equal_eager_runs_for_new_data_and_lengths(norm, monkeypatch):
    """One captured chunk per shape serves every length; its replays equal eager launches."""
    from rnnlib.ligru import step_graphs

    step_graphs.clear()
    runs = [
        random_inputs(3, time, 7, lengths, drop=True, directions=2, seed=seed)
        for seed, (time, lengths) in enumerate([(40, [40, 9, 33]), (75, [75, 70, 1])])
    ]
    graphed = [run_recurrence(leaves, "tanh", norm, torch.float32) for leaves in runs]
    assert len(step_graphs._graphs) == 2  # forward and backward: the second run reused them
    monkeypatch.setattr(step_graphs, "GRAPHS", False)
    eager = [run_recurrence(leaves, "tanh", norm, torch.float32) for leaves in runs]
    for got, expected in zip(graphed, eager, strict=True):
        for a, b in zip(got, expected, strict=True):
            assert torch.equal(a, b)


@needs_cuda
def test_a_layer_inside_a_callers_cuda_graph():
    """Under the caller's capture the steps go into the caller's graph, tables and all."""
    torch.manual_seed(0)
    rnn = LiGRU(input_size=5, hidden_size=9, bidirectional=True).to(DEVICE).eval()
    x = torch.randn(2, 20, 5, device=DEVICE)
    with torch.no_grad():
        expected, _ = rnn(x)
        rnn(x)  # warm-up outside the capture
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured, _ = rnn(x)
        x.copy_(torch.randn_like(x))
        graph.replay()
        fresh, _ = rnn(x)
    assert torch.equal(captured, fresh)
    assert not torch.equal(captured, expected)


@needs_cuda
def test_a_failed_capture_falls_back_with_one_log_line(monkeypatch, caplog):
    from rnnlib.ligru import step_graphs

    step_graphs.clear()

    class Broken:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("capture is not supported here")

    monkeypatch.setattr(step_graphs.torch.cuda, "graph", Broken)
    leaves = random_inputs(2, 40, 7, [40, 12], drop=False, directions=1, seed=9)
    with caplog.at_level(logging.WARNING, logger="rnnlib.ligru.step_graphs"):
        got = run_recurrence(leaves, "relu", False, torch.float32)
        run_recurrence(leaves, "relu", False, torch.float32)
    monkeypatch.setattr(step_graphs, "GRAPHS", False)
    expected = run_recurrence(leaves, "relu", False, torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    assert len([r for r in caplog.records if "capture failed" in r.message]) == 2  # fwd, bwd
    step_graphs.clear()
