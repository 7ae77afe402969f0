"""Dynamic int8 quantisation of an acoustic model for CPU inference.

Every ``nn.Linear`` (the Light GRU's input projections, the output layer, the convolutional
front end's none) becomes torch's dynamically quantised linear: int8 weights, activations
quantised per batch, float32 out. Recurrent weights (the Light GRU's ``U``, the torch RNNs')
stay float32: they run in fused kernels with their own arithmetic. A package exported with
``quantize=int8`` stores the quantised weights and quantises its model the same way on loading.

>>> model = torch.nn.Sequential(torch.nn.Linear(40, 64), torch.nn.Linear(64, 8))
>>> quantized = quantize_int8(model)
>>> type(quantized[0]).__name__, quantized(torch.randn(2, 40)).shape
('Linear', torch.Size([2, 8]))
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

QUANTIZATIONS = ("none", "int8")


def quantize_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` dynamically quantised to int8 (CPU)."""
    with warnings.catch_warnings():
        # torch marks its quantised tensor types for a future replacement; they work today
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return torch.ao.quantization.quantize_dynamic(
            model.cpu().eval(), {nn.Linear}, dtype=torch.qint8, inplace=False
        )
