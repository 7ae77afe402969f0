"""Directions of a bidirectional Light GRU run concurrently on CPU: same numbers, clean state."""

import pytest
import torch

from rnnlib import LiGRU, SLiGRU
from rnnlib.ligru import parallel_directions
from rnnlib.ligru.denormals import flushing_denormals
from rnnlib.ligru.parallel_directions import direction_groups, run_directions

CPU = torch.device("cpu")


@pytest.fixture
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


def outputs_and_grads(rnn, x, lengths):
    out, h_n = rnn(x, lengths=lengths)
    loss = (out * torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view_as(out)).sum()
    loss = loss + h_n.square().sum()
    return out, h_n, *torch.autograd.grad(loss, [x, *rnn.parameters()])


@pytest.mark.parametrize("cls,nonlinearity", [(LiGRU, "relu"), (LiGRU, "tanh"), (SLiGRU, "relu")])
def test_concurrent_directions_match_one_loop(two_threads, monkeypatch, cls, nonlinearity):
    assert direction_groups(2, CPU) == 2  # the concurrent route is the one under test
    torch.manual_seed(0)
    rnn = cls(9, input_size=5, num_layers=2, bidirectional=True, nonlinearity=nonlinearity)
    rnn = rnn.double()
    x = torch.randn(3, 30, 5, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([30, 12, 25])
    concurrent = outputs_and_grads(rnn, x, lengths)
    monkeypatch.setattr(parallel_directions, "ENABLED", False)
    one_loop = outputs_and_grads(rnn, x, lengths)
    for got, expected in zip(concurrent, one_loop, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_workers_run_without_autograd_and_restore_the_thread_count(two_threads):
    with torch.enable_grad():
        flags = run_directions(lambda part: torch.is_grad_enabled(), 2, CPU)
        threads_inside = run_directions(lambda part: torch.get_num_threads(), 2, CPU)
    assert flags == [False, False]
    assert threads_inside == [1, 1]
    assert torch.get_num_threads() == 2


def test_an_error_in_a_worker_reaches_the_caller_and_threads_come_back(two_threads):
    def body(part):
        if part.start == 1:
            raise ValueError("direction 1 failed")
        return part.start

    with pytest.raises(ValueError, match="direction 1 failed"):
        run_directions(body, 2, CPU)
    assert torch.get_num_threads() == 2


def test_inference_mode_reaches_the_workers(two_threads):
    torch.manual_seed(0)
    rnn = LiGRU(8, input_size=4, bidirectional=True).eval()
    x = torch.randn(2, 15, 4)
    with torch.no_grad():
        expected, _ = rnn(x)
    with torch.inference_mode():
        got, _ = rnn(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_one_direction_or_one_thread_runs_in_the_callers_thread(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert direction_groups(2, CPU) == 1
    assert run_directions(lambda part: (part.start, part.stop), 2, CPU) == [(0, 2)]
    assert run_directions(lambda part: flushing_denormals(), 2, CPU) == [True]
    assert not flushing_denormals()


def test_every_workers_thread_flushes_denormals_and_the_caller_is_restored(two_threads):
    assert not flushing_denormals()
    assert run_directions(lambda part: flushing_denormals(), 2, CPU) == [True, True]
    assert not flushing_denormals()
