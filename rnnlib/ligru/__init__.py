"""The Light GRU and the stabilised Light GRU: interface apart from the kernels.

=====================  ==============================================================
``modules``            ``LiGRU`` and ``SLiGRU``, the ``nn.Module`` interface
``recurrence``         the recurrence's contract, its step-by-step reference, dispatch
``cpu_kernel``         the fast CPU kernel (custom autograd function)
``products``           its matrix products and the fixed rule choosing their route
``pointwise``          gate and candidate arithmetic shared by kernel and reference
``masked_norm``        batch norm over valid frames only
``layout``             time-major loop buffers <-> batch-major outputs
``parallel_directions``  the two directions of a layer as concurrent CPU loops
``loop_route``         the fixed rule choosing the loops over time: Python, C++ or Triton
``cpp_loops``          the CPU loops in C++ (``cpp_loops.cpp``), built once per machine
``triton_steps``       the fused GPU steps (Triton)
=====================  ==============================================================

>>> import torch
>>> LiGRU(8, input_size=4)(torch.randn(2, 5, 4))[0].shape
torch.Size([2, 5, 8])
"""

from rnnlib.ligru.modules import LiGRU, SLiGRU

__all__ = ["LiGRU", "SLiGRU"]
