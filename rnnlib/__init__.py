"""rnnlib: recurrent layers over ``[batch, time, features]`` with one interface.

``RNN``, ``LSTM`` and ``GRU`` wrap ``torch.nn``; ``LiGRU`` and ``SLiGRU`` are Light GRUs.
Every layer is built from ``hidden_size`` and ``input_size`` (or an example ``input_shape``) and
runs ``forward(x, lengths=None, hx=None) -> (output, h_n)``.

>>> import torch, rnnlib
>>> rnn = rnnlib.build_rnn("sligru", input_size=40, hidden_size=32, bidirectional=True)
>>> rnn(torch.randn(2, 30, 40))[0].shape
torch.Size([2, 30, 64])
"""

from rnnlib.factory import RNN_TYPES, build_rnn
from rnnlib.ligru import LiGRU, SLiGRU
from rnnlib.torch_rnn import GRU, LSTM, RNN

__all__ = ["GRU", "LSTM", "RNN", "RNN_TYPES", "LiGRU", "SLiGRU", "build_rnn"]
