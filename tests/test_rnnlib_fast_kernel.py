"""The fast Light GRU kernel against the step-by-step autograd reference, option by option."""

import itertools

import pytest
import torch

from rnnlib import LiGRU, SLiGRU
from rnnlib.ligru import products
from rnnlib.ligru.recurrence import (
    NONLINEARITIES,
    ligru_recurrence,
    ligru_recurrence_directions,
    ligru_recurrence_reference,
)
from rnnlib.torch_internals import onednn_linear_available

# (rtol, atol relative to the largest expected magnitude): float32 rounding differs between the
# fused kernel and the reference, and long recurrences amplify it (both are as close to float64).
TOLERANCES = {torch.float64: (1e-10, 1e-12), torch.float32: (1e-4, 1e-4)}


def assert_close(got, expected, dtype, msg=None):
    rtol, scale = TOLERANCES[dtype]
    atol = scale * max(expected.abs().max().item(), 1.0)
    torch.testing.assert_close(got, expected, rtol=rtol, atol=atol, msg=msg)


def recurrence_inputs(dtype, batch=3, time=23, hidden=6, lengths=None, drop=False, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        values = torch.randn(*shape, generator=generator, dtype=torch.float64) * scale
        return values.to(dtype).requires_grad_()

    a = randn(batch, time, 2 * hidden)
    weight = randn(2 * hidden, hidden, scale=0.5)
    h0 = randn(batch, hidden)
    mask = None
    if lengths is not None:
        mask = torch.arange(time).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    drop_mask = None
    if drop:
        keep = torch.rand(batch, hidden, generator=generator) > 0.3
        drop_mask = keep.to(dtype) / 0.7
    return a, weight, h0, mask, drop_mask


def outputs_and_grads(fn, a, weight, h0, mask, drop_mask, nonlinearity, norm):
    out, h_n = fn(a, weight, h0, mask, nonlinearity, norm, drop_mask)
    generator = torch.Generator().manual_seed(1)
    grad_out = torch.randn(out.shape, generator=generator, dtype=torch.float64).to(out)
    grad_h = torch.randn(h_n.shape, generator=generator, dtype=torch.float64).to(out)
    loss = (out * grad_out).sum() + (h_n * grad_h).sum()
    return (out, h_n, *torch.autograd.grad(loss, (a, weight, h0)))


OPTIONS = list(itertools.product(NONLINEARITIES, [False, True], [None, [23, 5, 17]], [False, True]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("nonlinearity,norm,lengths,drop", OPTIONS)
def test_recurrence_matches_reference(dtype, nonlinearity, norm, lengths, drop):
    inputs = recurrence_inputs(dtype, lengths=lengths, drop=drop)
    fast = outputs_and_grads(ligru_recurrence, *inputs, nonlinearity, norm)
    reference = outputs_and_grads(ligru_recurrence_reference, *inputs, nonlinearity, norm)
    for name, got, expected in zip(["out", "h_n", "da", "dU", "dh0"], fast, reference, strict=True):
        assert_close(got, expected, dtype, msg=name)
    if lengths is not None:  # padded frames output zero
        mask = inputs[3]
        assert (fast[0][~mask] == 0).all()


def test_long_sequences_cross_backward_chunks():
    """More steps than one backward chunk (64), with padding, SLi-GRU."""
    inputs = recurrence_inputs(torch.float64, batch=2, time=150, hidden=4, lengths=[150, 70])
    fast = outputs_and_grads(ligru_recurrence, *inputs, "relu", True)
    reference = outputs_and_grads(ligru_recurrence_reference, *inputs, "relu", True)
    for got, expected in zip(fast, reference, strict=True):
        assert_close(got, expected, torch.float64)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("norm", [False, True])
def test_two_directions_in_one_loop_match_separate_runs(norm, nonlinearity):
    first = recurrence_inputs(torch.float64, lengths=[23, 5, 17], drop=True, seed=0)
    second = recurrence_inputs(torch.float64, lengths=[23, 5, 17], drop=True, seed=1)
    mask = first[3]
    h0 = torch.stack([first[2], second[2]])
    drop = torch.stack([first[4], second[4]])

    def run(reference):
        out, h_n = ligru_recurrence_directions(
            [first[0], second[0]],
            [first[1], second[1]],
            h0,
            mask,
            nonlinearity,
            norm,
            drop,
            reference,
        )
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum()
        loss = loss + h_n.square().sum()
        grads = torch.autograd.grad(loss, (first[0], second[0], first[1], second[1], first[2]))
        return out, h_n, *grads

    for got, expected in zip(run(False), run(True), strict=True):
        assert_close(got, expected, torch.float64)


@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("nonlinearity", NONLINEARITIES)
def test_gradcheck_through_fast_kernel(nonlinearity, norm):
    a, weight, h0, mask, drop_mask = recurrence_inputs(
        torch.float64, batch=2, time=5, hidden=3, lengths=[5, 3], drop=True
    )
    if nonlinearity in ("relu", "leaky_relu"):  # keep pre-activations away from the kink
        with torch.no_grad():
            a[..., 3:] += torch.where(a[..., 3:] > 0, 0.5, -0.5)

    def run(a, weight, h0):
        return ligru_recurrence(a, weight, h0, mask, nonlinearity, norm, drop_mask)

    assert torch.autograd.gradcheck(run, (a, weight, h0))


def test_gradcheck_two_directions():
    first = recurrence_inputs(torch.float64, batch=2, time=4, hidden=3, lengths=[4, 2], seed=0)
    second = recurrence_inputs(torch.float64, batch=2, time=4, hidden=3, lengths=[4, 2], seed=1)
    h0 = torch.stack([first[2], second[2]]).detach().requires_grad_()

    def run(a1, a2, w1, w2, h0):
        return ligru_recurrence_directions([a1, a2], [w1, w2], h0, first[3], "sin", True)

    assert torch.autograd.gradcheck(run, (first[0], second[0], first[1], second[1], h0))


LAYERS = [
    dict(cls=cls, bidirectional=bi, share_directions=share, normalization=norm)
    for cls, (bi, share), norm in itertools.product(
        [LiGRU, SLiGRU],
        [(False, False), (True, False), (True, True)],
        ["batchnorm", "layernorm", "none"],
    )
]


def layer_outputs_and_grads(rnn, x, lengths, hx):
    out, h_n = rnn(x, lengths=lengths, hx=hx)
    weights = torch.cos(torch.arange(out.numel(), dtype=out.dtype, device=out.device))
    loss = (out * weights.view_as(out)).sum()
    loss = loss + (h_n * h_n).sum()
    parameters = [p for _, p in sorted(rnn.named_parameters())]
    return out, h_n, *torch.autograd.grad(loss, [x, hx, *parameters])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("config", LAYERS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_layer_fast_matches_reference(config, dtype):
    config = dict(config)
    cls = config.pop("cls")
    torch.manual_seed(0)
    rnn = cls(input_size=5, hidden_size=7, num_layers=2, nonlinearity="leaky_relu", **config)
    rnn = rnn.to(dtype)
    x = torch.randn(3, 11, 5, dtype=dtype, requires_grad=True)
    hx = torch.randn(2 * rnn.num_directions, 3, 7, dtype=dtype, requires_grad=True)
    lengths = torch.tensor([11, 4, 8])
    fast = layer_outputs_and_grads(rnn, x, lengths, hx)
    rnn.reference_recurrence = True
    reference = layer_outputs_and_grads(rnn, x, lengths, hx)
    for got, expected in zip(fast, reference, strict=True):
        assert_close(got, expected, dtype)


def test_inference_matches_training_forward_and_backward_can_repeat():
    inputs = recurrence_inputs(torch.float64, lengths=[23, 5, 17], drop=True)
    a, weight, h0, mask, drop_mask = inputs
    out, h_n = ligru_recurrence(a, weight, h0, mask, "relu", True, drop_mask)
    with torch.no_grad():
        out_eval, h_eval = ligru_recurrence(a, weight, h0, mask, "relu", True, drop_mask)
    torch.testing.assert_close(out_eval, out, rtol=0, atol=0)
    torch.testing.assert_close(h_eval, h_n, rtol=0, atol=0)
    loss = out.sum() + h_n.sum()
    first = torch.autograd.grad(loss, (a, weight, h0), retain_graph=True)
    second = torch.autograd.grad(loss, (a, weight, h0))
    for g1, g2 in zip(first, second, strict=True):
        torch.testing.assert_close(g1, g2, rtol=0, atol=0)


@pytest.mark.parametrize("cls", [LiGRU, SLiGRU])
def test_cpu_autocast_bfloat16_products_float32_states(cls):
    """Under autocast the products run in bfloat16 and the states stay float32: the output is
    float32 and within bfloat16 product rounding of the float32 run (max 0.035, mean 0.002 here;
    bfloat16 states, the former behaviour, gave max 0.056-0.069, mean 0.0033-0.0037). Gradients
    through 120 steps of bfloat16 products stay within 14 % (relative norm) of float32's."""
    torch.manual_seed(0)
    rnn = cls(input_size=40, hidden_size=64, num_layers=2, bidirectional=True)
    x = torch.randn(3, 120, 40)
    lengths = torch.tensor([120, 77, 40])
    expected, _ = rnn(x, lengths=lengths)
    expected.sum().backward()
    expected_grads = [p.grad.clone() for p in rnn.parameters()]
    rnn.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, h_n = rnn(x, lengths=lengths)
    assert out.dtype == torch.float32 and h_n.dtype == torch.float32
    error = (out - expected).abs()
    assert 0 < error.max() < 0.045 and error.mean() < 0.0027, (error.max(), error.mean())
    assert (out[1, 77:] == 0).all()  # padding still zero
    out.sum().backward()
    for got, want in zip([p.grad for p in rnn.parameters()], expected_grads, strict=True):
        assert got is not None and got.dtype == torch.float32
        assert (got - want).norm() < 0.2 * want.norm()


@pytest.mark.parametrize("rows", [3, 20])
@pytest.mark.parametrize("directions", [1, 2])
def test_product_routes_agree(rows, directions):
    weight = torch.randn(directions, 12, 6)
    x = torch.randn(directions, rows, 6)
    out = torch.randn(directions, rows, 12)
    expected = out + x @ weight.transpose(1, 2)
    if not onednn_linear_available():
        pytest.skip("this build has no oneDNN")
    for route in products.ROUTES:  # force each route, whatever the rule gives here
        with products.force_route(route):
            product = products.RecurrentProduct(weight, rows)
        assert product.use_onednn == (route == "onednn")
        if product.use_onednn:  # packed once, in oneDNN's own layout
            assert all(w.is_mkldnn and w.shape == weight.shape[1:] for w in product.weights)
        got = out.clone()
        product.add_into(got, x)
        torch.testing.assert_close(got, expected)
        torch.testing.assert_close(product(x), x @ weight.transpose(1, 2))
        buffer = torch.full_like(out, float("nan"))  # overwritten, never read
        assert product.into(buffer, x) is buffer
        assert torch.equal(buffer, product(x))  # the same bits as a fresh result


@pytest.mark.parametrize("rows", [3, 20])
@pytest.mark.parametrize("directions", [1, 2])
def test_bfloat16_products_add_into_float32_on_every_route(rows, directions):
    """Mixed precision: bfloat16 operands, the sum in a float32 ``out`` (what autocast runs)."""
    weight = torch.randn(directions, 12, 6)
    x = torch.randn(directions, rows, 6)
    out = torch.randn(directions, rows, 12)
    low_x, low_w = x.bfloat16().double(), weight.bfloat16().double()
    expected = out.double() + low_x @ low_w.transpose(1, 2)
    routes = products.ROUTES if onednn_linear_available(torch.bfloat16) else ("blas",)
    for route in routes:
        with products.force_route(route):
            product = products.RecurrentProduct(weight, rows, dtype=torch.bfloat16)
        got = out.clone()
        product.add_into(got, x)
        assert got.dtype == torch.float32
        buffer = torch.full_like(out, float("nan"))
        assert torch.equal(product.into(buffer, x), product(x).float())  # rounded once
        # the product is rounded to bfloat16 once (8 bits), then added in float32
        torch.testing.assert_close(got.double(), expected, rtol=0, atol=0.02 * expected.abs().max())


@pytest.mark.parametrize("norm", [False, True])
def test_many_rows_float32_matches_reference(norm):
    """A batch of 20 rows: one product per step with the weight packed for 20 rows."""
    inputs = recurrence_inputs(torch.float32, batch=20, lengths=[23] * 10 + [9] * 10, drop=True)
    fast = outputs_and_grads(ligru_recurrence, *inputs, "relu", norm)
    reference = outputs_and_grads(ligru_recurrence_reference, *inputs, "relu", norm)
    for got, expected in zip(fast, reference, strict=True):
        assert_close(got, expected, torch.float32)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("norm", [False, True])
def test_cuda_matches_reference(dtype, norm):
    inputs = recurrence_inputs(dtype, lengths=[23, 5, 17], drop=True)
    on_gpu = [
        None if t is None else t.detach().cuda().requires_grad_(t.requires_grad) for t in inputs
    ]
    fast = outputs_and_grads(ligru_recurrence, *on_gpu, "leaky_relu", norm)
    reference = outputs_and_grads(ligru_recurrence_reference, *inputs, "leaky_relu", norm)
    for got, expected in zip(fast, reference, strict=True):
        assert got.is_cuda
        assert_close(got.cpu(), expected, dtype)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("cls", [LiGRU, SLiGRU])
def test_cuda_autocast_runs_close_to_float32(cls, dtype):
    torch.manual_seed(0)
    rnn = cls(input_size=8, hidden_size=16, num_layers=2, bidirectional=True).cuda()
    x = torch.randn(2, 20, 8, device="cuda")
    lengths = torch.tensor([20, 13])
    expected, _ = rnn(x, lengths=lengths)
    with torch.autocast("cuda", dtype=dtype):
        out, _ = rnn(x, lengths=lengths)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()  # float32 states
    error = (out.float() - expected).abs()
    assert error.max() < 0.15 and error.mean() < 0.01
    out.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in rnn.parameters())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("config", LAYERS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_cuda_layer_matches_cpu(config):
    """Every layout and normalisation: the kernel on CUDA equals the CPU kernel (float64)."""
    config = dict(config)
    cls = config.pop("cls")
    torch.manual_seed(0)
    rnn = cls(input_size=5, hidden_size=7, num_layers=2, nonlinearity="tanh", **config).double()
    x = torch.randn(3, 11, 5, dtype=torch.double, requires_grad=True)
    hx = torch.randn(2 * rnn.num_directions, 3, 7, dtype=torch.double, requires_grad=True)
    lengths = torch.tensor([11, 4, 8])
    expected = layer_outputs_and_grads(rnn, x, lengths, hx)
    gpu_x, gpu_hx = (t.detach().cuda().requires_grad_() for t in (x, hx))
    got = layer_outputs_and_grads(rnn.cuda(), gpu_x, lengths, gpu_hx)
    for g, e in zip(got, expected, strict=True):
        assert g.is_cuda
        assert_close(g.cpu(), e, torch.float64)


@pytest.mark.parametrize("layer", [LiGRU, SLiGRU])
def test_compiled_layer_runs_the_kernel_eagerly_for_every_length(layer):
    """Under ``torch.compile`` the recurrence is left to the kernel (tracing its loop over time
    would unroll it: minutes per length); outputs and gradients equal the eager layer's, and a
    new length does not trace the model again."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    rnn = layer(5, input_size=4, bidirectional=True, nonlinearity="tanh").train()
    head = torch.nn.Linear(10, 3)

    def model(x, lengths):
        return head(rnn(x, lengths)[0]).log_softmax(-1)

    graphs = []

    def backend(graph_module, example_inputs):  # a torch.compile backend that runs the graph
        graphs.append(graph_module)
        return graph_module.forward

    compiled = torch.compile(model, dynamic=True, backend=backend)
    traced = 0
    for time in (9, 13, 6):
        x = torch.randn(3, time, 4)
        lengths = torch.tensor([time, time - 2, 1])
        torch.manual_seed(1)
        got = compiled(x, lengths)
        (grad,) = torch.autograd.grad(got.sum(), rnn.layers[0][0].w.weight)
        torch.manual_seed(1)
        expected = model(x, lengths)
        (expected_grad,) = torch.autograd.grad(expected.sum(), rnn.layers[0][0].w.weight)
        torch.testing.assert_close(got, expected)
        torch.testing.assert_close(grad, expected_grad)
        traced = traced if time != 9 else len(graphs)  # the graphs around the kernel
    assert traced > 0
    assert len(graphs) == traced  # each new length reused them
