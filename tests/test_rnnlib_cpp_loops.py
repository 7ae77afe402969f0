"""The Light GRU's C++ loops: the Python loops' results bit for bit, the rule that picks them,
and what happens where they cannot be built."""

import copy
import itertools
import logging
import multiprocessing
import os
import subprocess
import sys

import pytest
import torch

from rnnlib import LiGRU, SLiGRU
from rnnlib.ligru import cpp_loops, loop_route, products
from rnnlib.ligru.loop_route import force_loop_route
from rnnlib.ligru.recurrence import NONLINEARITIES, ligru_recurrence_directions
from tests.test_rnnlib_fast_kernel import recurrence_inputs

CPU = torch.device("cpu")
needs_cpp = pytest.mark.skipif(
    cpp_loops.extension() is None, reason=f"C++ loops not built: {cpp_loops.build_error()}"
)


def two_directions(dtype, time, lengths, drop, nonlinearity, norm, route, products_=None):
    """Output, final states and every gradient of a two-direction recurrence run by ``route``;
    ``products_``: ``(product route or None, bfloat16 autocast)``."""
    product_route, autocast = products_ or (None, False)
    first = recurrence_inputs(dtype, time=time, lengths=lengths, drop=drop, seed=0)
    second = recurrence_inputs(dtype, time=time, lengths=lengths, drop=drop, seed=1)
    leaves = [first[0], second[0], first[1], second[1], first[2], second[2]]
    h0 = torch.stack([first[2], second[2]])
    drop_mask = torch.stack([first[4], second[4]]) if drop else None
    with (
        force_loop_route(route),
        products.force_route(product_route),
        torch.autocast("cpu", torch.bfloat16, enabled=autocast),
    ):
        out, h_n = ligru_recurrence_directions(
            [first[0], second[0]], [first[1], second[1]], h0, first[3], nonlinearity, norm,
            drop_mask, False,
        )  # fmt: skip
        loss = (out * torch.cos(torch.arange(out.numel(), dtype=dtype)).view_as(out)).sum()
        grads = torch.autograd.grad(loss + h_n.square().sum(), leaves)
    return out, h_n, *grads


OPTIONS = list(itertools.product(NONLINEARITIES, [False, True], [None, [70, 9, 41]], [False, True]))
# dtype, product route (None: the rule's), bfloat16 autocast: every branch of RecurrentProduct
PRODUCTS = {
    "float32": (torch.float32, None, False),
    "float32-mkl": (torch.float32, "blas", False),
    "float32-onednn": (torch.float32, "onednn", False),
    "float64": (torch.float64, None, False),
    "bf16-autocast": (torch.float32, None, True),
}


def assert_equal_on_both_loops(options, products_=None):
    python = two_directions(*options, "torch", products_)
    cpp = two_directions(*options, "cpp", products_)
    names = ["out", "h_n", "da1", "da2", "dU1", "dU2", "dh0_1", "dh0_2"]
    for name, got, expected in zip(names, cpp, python, strict=True):
        assert torch.equal(got, expected), name


@needs_cpp
@pytest.mark.parametrize("nonlinearity,norm,lengths,drop", OPTIONS)
def test_cpp_loops_equal_the_python_loops_bit_for_bit(nonlinearity, norm, lengths, drop):
    """70 steps cross a backward chunk (64 steps); two directions; every option."""
    assert_equal_on_both_loops((torch.float32, 70, lengths, drop, nonlinearity, norm))


@needs_cpp
@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("name", list(PRODUCTS))
def test_every_product_route_is_the_python_loops_bit_for_bit(name, norm):
    dtype, route, autocast = PRODUCTS[name]
    if route == "onednn" and not products.onednn_linear_available(dtype):
        pytest.skip("oneDNN's linear does not run float32 here")
    options = (dtype, 70, [70, 9, 41], True, "relu", norm)
    assert_equal_on_both_loops(options, (route, autocast))


@needs_cpp
@pytest.mark.parametrize("cls", [LiGRU, SLiGRU])
def test_layers_in_training_and_inference_equal_on_both_routes(cls):
    """Whole layers, bidirectional with lengths and recurrent dropout (the same random masks)."""
    torch.manual_seed(0)
    rnn = cls(16, input_size=5, num_layers=2, bidirectional=True, recurrent_dropout=0.2)
    x, lengths = torch.randn(3, 30, 5), torch.tensor([30, 12, 21])
    results, start = {}, copy.deepcopy(rnn.state_dict())
    for route in ("torch", "cpp"):
        rnn.load_state_dict(start)  # the batch norm's running statistics as before
        torch.manual_seed(1)
        with force_loop_route(route):
            out, h_n = rnn.train()(x, lengths=lengths)
            grads = torch.autograd.grad(out.sin().sum() + h_n.sum(), list(rnn.parameters()))
            with torch.inference_mode():
                inferred = rnn.eval()(x, lengths=lengths)[0]
        results[route] = [out, h_n, *grads, inferred]
    for got, expected in zip(results["cpp"], results["torch"], strict=True):
        assert torch.equal(got, expected)


@needs_cpp
def test_rule_takes_cpp_for_cpu_tensors():
    assert loop_route.cpp_runs()
    for dtype in (torch.float32, torch.float64):
        assert loop_route.loop_route(CPU, dtype) == "cpp"
    with force_loop_route("torch"):
        assert loop_route.loop_route(CPU, torch.float32) == "torch"


@needs_cpp
def test_the_environment_variable_chooses_either_cpu_loop(monkeypatch):
    for route in ("torch", "cpp"):
        monkeypatch.setenv("RNNLIB_LIGRU_LOOP", route)
        assert loop_route.loop_route(CPU, torch.float32) == route
    with pytest.raises(RuntimeError, match="CPU tensors, not cuda"):
        loop_route.loop_route(torch.device("cuda"), torch.float32)


@needs_cpp
def test_the_first_use_check_rejects_loops_whose_bits_differ(monkeypatch, caplog):
    real = cpp_loops.extension()

    class OffByABit:  # the built loops, but the last state moved by far less than any tolerance
        Product = real.Product
        backward_steps = real.backward_steps

        @staticmethod
        def forward_loop(gates, states, *args):
            real.forward_loop(gates, states, *args)
            states[:, -1] += 1e-6

    monkeypatch.setattr(cpp_loops, "_extension", OffByABit)
    monkeypatch.setattr(loop_route, "_cpp_runs", None)
    with caplog.at_level(logging.WARNING, logger=loop_route.__name__):
        assert loop_route.loop_route(CPU, torch.float32) == "torch"
        assert loop_route.loop_route(CPU, torch.float32) == "torch"  # checked once
    lines = [r.getMessage() for r in caplog.records if r.name == loop_route.__name__]
    assert len(lines) == 1 and "differ from the torch loops" in lines[0], lines


def test_a_failed_build_logs_once_and_the_python_loops_run(monkeypatch, tmp_path, caplog):
    broken = tmp_path / "broken.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(cpp_loops, "SOURCE", broken)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "build"))
    monkeypatch.setattr(cpp_loops, "_extension", None)
    monkeypatch.setattr(cpp_loops, "_error", None)
    monkeypatch.setattr(loop_route, "_cpp_runs", None)
    with caplog.at_level(logging.WARNING):
        assert loop_route.loop_route(CPU, torch.float32) == "torch"
        assert loop_route.loop_route(CPU, torch.float32) == "torch"
    warnings = [r.message for r in caplog.records if "C++ loops could not be built" in r.message]
    assert len(warnings) == 1, warnings
    assert "Error building extension" in cpp_loops.build_error()
    with force_loop_route("cpp"), pytest.raises(RuntimeError, match="forced, but"):
        loop_route.loop_route(CPU, torch.float32)
    torch.manual_seed(0)
    out = LiGRU(4, input_size=3)(torch.randn(2, 5, 3))[0]  # the rule's fallback runs
    assert out.shape == (2, 5, 4) and torch.isfinite(out).all()


@needs_cpp
def test_a_lock_left_by_a_killed_build_is_not_waited_for():
    """The lock file of a build killed half-way stays behind: the next process builds (here:
    loads) instead of waiting for it."""
    directory = cpp_loops.build_root() / cpp_loops.build_name()
    (directory / "lock").write_text("")
    code = "from rnnlib.ligru import cpp_loops; assert cpp_loops.extension() is not None"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def _load_and_report(queue):
    from rnnlib.ligru import cpp_loops as loops

    queue.put(loops.extension() is not None)


@needs_cpp
def test_processes_starting_at_once_all_load_the_loops():
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_load_and_report, args=(queue,)) for _ in range(3)]
    for worker in workers:
        worker.start()
    loaded = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert loaded == [True, True, True]


@needs_cpp
@pytest.mark.slow
def test_a_half_written_library_is_built_again(tmp_path):
    """A build killed while linking leaves a library that does not import: the next process
    builds it again, and the rebuilt loops pass the first-use check (the Python loops' bits)."""
    name = cpp_loops.build_name()
    (tmp_path / name).mkdir()
    (tmp_path / name / f"{name}.so").write_bytes(b"\x7fELF cut short")
    code = (
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "from rnnlib.ligru import cpp_loops, loop_route\n"
        "print(cpp_loops.extension().__file__, loop_route.cpp_runs())\n"
    )
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "does not load" in done.stderr and "compiling" in done.stderr
    assert done.stdout.split() == [str(tmp_path / name / f"{name}.so"), "True"]
