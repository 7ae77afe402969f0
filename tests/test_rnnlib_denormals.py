"""The Light GRU's CPU loops flush denormals to zero and leave the thread as they found it."""

import pytest
import torch

from rnnlib.ligru.denormals import SMALLEST_NORMAL, flush_denormals, flushing_denormals
from rnnlib.ligru.recurrence import ligru_recurrence, ligru_recurrence_reference

STEPS = 160  # 0.5 ** t passes through float32's denormal range (2^-126 .. 2^-149) at t = 127..149


def decaying_inputs(hidden: int = 4) -> tuple[torch.Tensor, ...]:
    """Inputs under which every state halves each step: ``z = 0.5``, ReLU candidate 0, ``U = 0``."""
    a = torch.cat([torch.zeros(2, STEPS, hidden), torch.full((2, STEPS, hidden), -10.0)], -1)
    weight = torch.zeros(2 * hidden, hidden)
    h0 = torch.ones(2, hidden)
    return a.requires_grad_(), weight.requires_grad_(), h0.requires_grad_()


def denormal_count(tensor: torch.Tensor) -> int:
    magnitude = tensor.detach().abs()
    return int(((magnitude > 0) & (magnitude < SMALLEST_NORMAL)).sum())


@pytest.mark.parametrize("recurrent_norm", [False, True], ids=["ligru", "sligru"])
def test_kernel_output_and_gradients_hold_no_denormals(recurrent_norm):
    assert not flushing_denormals()
    a, weight, h0 = decaying_inputs()
    expected, _ = ligru_recurrence_reference(a, weight, h0, None, "relu", recurrent_norm)
    assert denormal_count(expected) > 0  # without the flush they are there
    out, h_n = ligru_recurrence(a, weight, h0, None, "relu", recurrent_norm)
    assert denormal_count(out) == 0
    normal = expected.detach().abs() >= SMALLEST_NORMAL
    torch.testing.assert_close(out[normal], expected[normal])
    assert (out[~normal] == 0).all() and (h_n == 0).all()
    grad_out = torch.zeros_like(out)
    grad_out[:, -1] = 1.0  # dh decays backwards through z = 0.5 into the denormal range
    grad_a, grad_h0 = torch.autograd.grad(out, (a, h0), grad_out)
    assert denormal_count(grad_a) == 0 and (grad_h0 == 0).all()
    assert not flushing_denormals()  # the thread's mode is restored


def test_flush_denormals_restores_the_mode_it_found():
    assert not flushing_denormals()
    with flush_denormals():
        assert flushing_denormals()
        with flush_denormals():  # nested: the inner block must not switch it off
            pass
        assert flushing_denormals()
    assert not flushing_denormals()
    with pytest.raises(RuntimeError), flush_denormals():
        raise RuntimeError("a failing loop")
    assert not flushing_denormals()
