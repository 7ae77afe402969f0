"""A package's ``model.onnx`` run by onnxruntime in place of the PyTorch acoustic model.

``PhoneRecognizer.from_directory(folder, backend="onnx")`` (or ``recognizer_runtime.load(
backend="onnx")`` in a package) puts an :class:`OnnxAcousticModel` where the PyTorch model
would be: features, decoding and times are the runtime's own, only the log-posteriors come
from onnxruntime (CPU). onnxruntime is imported only here, when the model is made; the graph is
written by :mod:`recipes.toolkit.package.onnx_export` (``export onnx=true``). The streaming
recogniser needs the PyTorch model (it carries the encoder's state between chunks).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

ONNX_FILE = "model.onnx"
BACKENDS = ("torch", "onnx")


class OnnxAcousticModel(nn.Module):
    """``(features [batch, time, dim], lengths [batch]) -> log-probabilities [batch, time,
    outputs]`` by an onnxruntime session of ``path``, with the acoustic model's interface.

    ``threads``: onnxruntime's intra-op threads (0: its default, every core).

    Example (a graph written for a fresh model):
        >>> import tempfile
        >>> from recipes.toolkit.model import AcousticModel
        >>> from recipes.toolkit.package.onnx_export import export_onnx
        >>> model = AcousticModel(8, 5, {"name": "ligru", "hidden_size": 6}).eval()
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     onnx_model = OnnxAcousticModel(export_onnx(model, Path(folder) / ONNX_FILE))
        >>> x, lengths = torch.randn(2, 9, 8), torch.tensor([9, 4])
        >>> torch.allclose(onnx_model(x, lengths)[1, :4], model(x, lengths)[1, :4], atol=1e-5)
        True
    """

    cpu_only = True

    def __init__(self, path: str | os.PathLike, threads: int = 0) -> None:
        super().__init__()
        import onnxruntime  # only for this backend: the package needs it only then

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(threads)
        if threads:
            options.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]

    def forward(self, feats: Tensor, lengths: Tensor) -> Tensor:
        inputs = {
            self.input_names[0]: feats.detach().cpu().float().numpy(),
            self.input_names[1]: lengths.detach().cpu().to(torch.int64).numpy(),
        }
        (log_probs,) = self.session.run(None, inputs)
        return torch.from_numpy(np.ascontiguousarray(log_probs))

    def extra_repr(self) -> str:
        return f"{self.path}"
