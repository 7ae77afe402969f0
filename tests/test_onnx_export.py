"""The ONNX graph of the acoustic model gives PyTorch's log-posteriors, for every rnn type.

Each graph is built once and run by onnxruntime at batch sizes and lengths unrelated to
anything at export (the graph is written from the weights, nothing is traced), with unsorted
lengths and padded frames full of large noise; PyTorch runs each utterance alone, unpadded.
Tolerance: 1e-4 absolute on log-posteriors (float32; measured differences are about 1e-6).
int8 graphs: the quantised layer bit for bit (1e-6) on its own, whole models by
``compare_with_torch``'s criterion (rounding flips, see ``recipes.toolkit.package.onnx_export``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from recipes.toolkit.inference import Recognizer
from recipes.toolkit.model import AcousticModel
from recipes.toolkit.package import onnx_export
from recipes.toolkit.package.export import export_package
from recipes.toolkit.package.onnx_backend import ONNX_FILE
from recipes.toolkit.package.onnx_export import build_onnx, compare_with_torch, export_onnx
from recipes.toolkit.package.quantize import quantize_int8
from recipes.toolkit.package.runtime import PhoneRecognizer
from tests.inference_helpers import build, save_checkpoint, write_audio
from tests.recipe_helpers import run_entry

ATOL = 1e-4
FEATURES, OUTPUTS = 12, 9
BATCHES = [(7, 19, 3), (26, 11, 26, 2, 15, 1)]  # unsorted, with ties and a 1-frame sequence

CONFIGS = {
    "rnn-tanh-bi": {"name": "rnn", "hidden_size": 16, "num_layers": 2, "bidirectional": True},
    "rnn-relu-uni": {"name": "rnn", "hidden_size": 16, "num_layers": 2, "nonlinearity": "relu"},
    "lstm-bi": {"name": "lstm", "hidden_size": 16, "num_layers": 2, "bidirectional": True},
    "lstm-uni-nobias": {"name": "lstm", "hidden_size": 20, "num_layers": 2, "bias": False},
    "gru-bi-conv": {"name": "gru", "hidden_size": 16, "num_layers": 2, "bidirectional": True},
    "gru-uni": {"name": "gru", "hidden_size": 24, "num_layers": 2},
    "ligru-bi-batchnorm-tanh": {"name": "ligru", "hidden_size": 16, "num_layers": 2,
                                "bidirectional": True, "nonlinearity": "tanh"},
    "ligru-uni-batchnorm-relu": {"name": "ligru", "hidden_size": 16, "num_layers": 2},
    "ligru-bi-shared-layernorm-leaky": {"name": "ligru", "hidden_size": 16, "num_layers": 2,
                                       "bidirectional": True, "share_directions": True,
                                       "normalization": "layernorm",
                                       "nonlinearity": "leaky_relu"},
    "ligru-bi-none-sin-conv": {"name": "ligru", "hidden_size": 16, "num_layers": 2,
                               "bidirectional": True, "normalization": "none",
                               "nonlinearity": "sin"},
    "sligru-bi-relu": {"name": "sligru", "hidden_size": 16, "num_layers": 2,
                       "bidirectional": True},
    "sligru-uni-tanh-layernorm": {"name": "sligru", "hidden_size": 24, "num_layers": 2,
                                  "nonlinearity": "tanh", "normalization": "layernorm"},
    "sligru-bi-shared": {"name": "sligru", "hidden_size": 16, "num_layers": 2,
                         "bidirectional": True, "share_directions": True},
}  # fmt: skip


def make_model(key: str, seed: int = 0) -> AcousticModel:
    """A model of ``CONFIGS[key]`` in evaluation, random weights and batch-norm statistics."""
    torch.manual_seed(seed)
    frontend = [10] if key.endswith("-conv") else None
    model = AcousticModel(FEATURES, OUTPUTS, CONFIGS[key], frontend_channels=frontend)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0.0, 0.3)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
        for name, parameter in model.named_parameters():
            if "norm" in name:  # layer- and batch-norm affines away from (1, 0)
                parameter.add_(torch.randn_like(parameter) * 0.2)
    return model.eval()


def session(proto) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(proto.SerializeToString(), options,
                                        providers=["CPUExecutionProvider"])  # fmt: skip


def padded_batch(lengths, generator, garbage: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``[batch, longest + 4, FEATURES]``: noise (or zeros) on the padded frames."""
    lengths = torch.tensor(lengths)
    time = int(lengths.max()) + 4
    feats = torch.randn(len(lengths), time, FEATURES, generator=generator)
    valid = (torch.arange(time)[None, :] < lengths[:, None])[..., None]
    padding = torch.randn(feats.shape, generator=generator) * 100 if garbage else 0.0
    return torch.where(valid, feats, padding), lengths


def zero_padded(feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return feats * (torch.arange(feats.shape[1])[None, :, None] < lengths[:, None, None])


def run(sess, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    (out,) = sess.run(None, {"features": feats.numpy(), "lengths": lengths.numpy()})
    return torch.from_numpy(out)


def max_difference_to_torch(model, sess, seed: int = 1) -> float:
    """Largest |onnxruntime - PyTorch| over the valid frames of :data:`BATCHES`, PyTorch run
    on each utterance alone; padded output frames must equal PyTorch's on a zero-padded batch."""
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for lengths in BATCHES:
        feats, lens = padded_batch(lengths, generator, garbage=True)
        got = run(sess, feats, lens)
        assert got.shape == (len(lengths), feats.shape[1], OUTPUTS)
        with torch.no_grad():
            for b, n in enumerate(lens.tolist()):
                alone = model(feats[b : b + 1, :n], torch.tensor([n]))[0]
                worst = max(worst, float((got[b, :n] - alone).abs().max()))
            padded = model(zero_padded(feats, lens), lens)
        torch.testing.assert_close(got, padded, atol=ATOL, rtol=0)  # padded frames as well
    return worst


@pytest.mark.parametrize("key", list(CONFIGS))
def test_onnx_equals_torch_at_other_lengths_and_batches(key):
    model = make_model(key)
    proto = build_onnx(model)
    assert max_difference_to_torch(model, session(proto)) < ATOL


def linear_inputs() -> list[torch.Tensor]:
    """Inputs of a quantised layer that hit its edge cases: ties of the rounding (saturated
    tanh states at exactly +-1, quarter steps), one-signed ranges, tiny and all-zero ones."""
    generator = torch.Generator().manual_seed(3)
    cases = []
    for i in range(6):
        x = torch.randn(4, 30, 24, generator=generator)
        cases += [torch.tanh(4 * x), x * (i + 1) + i, torch.round(8 * x) / 4, x.abs() * 1e-3,
                  -x.abs(), x * 1e-5]  # fmt: skip
    return [*cases, torch.zeros(4, 30, 24)]


def test_int8_linear_layer_is_torch_int8_kernel_exactly():
    """The dynamic quantisation (range, scale, zero point, rounding) and the int8 product give
    what torch's kernel gives, bit for bit but for the last float32 multiply."""
    torch.manual_seed(0)
    for bias in (True, False):
        layer = quantize_int8(torch.nn.Sequential(torch.nn.Linear(24, 33, bias=bias)))[0]
        sess = session(onnx_export.build_linear_onnx(layer))
        for x in linear_inputs():
            lengths = torch.tensor([30, 30, 30, 30])
            with torch.no_grad():
                expected = layer(x)
            torch.testing.assert_close(run(sess, x, lengths), expected, atol=1e-6, rtol=1e-6)


INT8_KEYS = ["gru-bi-conv", "ligru-bi-batchnorm-tanh", "sligru-uni-tanh-layernorm",
             "ligru-bi-shared-layernorm-leaky", "lstm-bi"]  # fmt: skip


@pytest.mark.parametrize("key", INT8_KEYS)
def test_int8_onnx_follows_the_int8_torch_model(key):
    """The quantised layers take the batch's activation range (as torch's int8 kernel does): an
    utterance's posteriors depend on its batch, but not on what the padding holds. Equal to
    PyTorch's int8 model but where float rounding flips an activation's rounding
    (``compare_with_torch``'s criterion), and not the float model's posteriors."""
    model = make_model(key)
    quantized = quantize_int8(model)
    proto = build_onnx(quantized)
    compare_with_torch(quantized, proto, lengths=BATCHES)
    sess = session(proto)
    generator = torch.Generator().manual_seed(2)
    for lengths in BATCHES:
        noisy, lens = padded_batch(lengths, generator, garbage=True)
        clean = zero_padded(noisy, lens)
        got = run(sess, noisy, lens)
        torch.testing.assert_close(got, run(sess, clean, lens), atol=0, rtol=0)
        with torch.no_grad():
            exact = model(clean, lens)
        assert (got - exact).abs().max() > 1e-3  # quantised: not the float model's outputs


@pytest.mark.parametrize("error", [1e-3, float("nan")])
def test_check_names_where_the_graph_differs_and_a_nan_fails_it(monkeypatch, error):
    """One output off (or NaN) at a valid frame: the export check fails and says where."""
    model = AcousticModel(8, 5, {"name": "gru", "hidden_size": 4, "bidirectional": True})
    proto = build_onnx(model)
    real = onnxruntime.InferenceSession

    class OneOutputOff:
        def __init__(self, *args, **kwargs):
            self.session = real(*args, **kwargs)

        def get_inputs(self):
            return self.session.get_inputs()

        def run(self, names, feeds):
            (out,) = self.session.run(names, feeds)
            out = out.copy()
            out[1, 4, 2] = error if np.isnan(error) else out[1, 4, 2] + error
            return [out]

    assert compare_with_torch(model, proto) < ATOL
    monkeypatch.setattr(onnxruntime, "InferenceSession", OneOutputOff)
    where = r"at lengths \[13, 29, 5\], sequence 1, frame 4, output 2 \(PyTorch -?\d"
    with pytest.raises(ValueError, match=where):
        compare_with_torch(model, proto)


def test_int8_check_catches_a_graph_without_activation_quantisation(monkeypatch):
    quantized = quantize_int8(make_model("ligru-bi-batchnorm-tanh"))

    def float_product(self, layer, x):
        g = self.g
        y = g.op("MatMul", x, g.constant(layer.weight().dequantize().numpy().T))
        bias = layer.bias()
        return y if bias is None else g.op("Add", y, g.constant(bias.detach().numpy()))

    monkeypatch.setattr(onnx_export._Builder, "quantized_linear", float_product)
    with pytest.raises(ValueError, match="int8 ONNX graph differs"):
        compare_with_torch(quantized, build_onnx(quantized))


def _full_reverse(self, x: str) -> str:
    """A wrong backward direction: the whole padded time axis turned around."""
    g = self.g
    return g.op("Slice", x, g.ints(-1), g.ints(-(2**62)), g.ints(0), g.ints(-1))


@pytest.mark.parametrize("key", ["ligru-bi-batchnorm-tanh", "sligru-bi-shared", "gru-bi-conv",
                                 "lstm-bi"])  # fmt: skip
def test_a_backward_direction_starting_on_padding_is_caught(key, monkeypatch):
    """The comparison fails when the backward direction starts at the padded end (the Light
    GRU reversed over the whole time axis; ONNX's RNN operators without sequence_lens)."""
    model = make_model(key)
    torch_rnn = onnx_export._Builder.torch_rnn

    def without_lengths(self, encoder, x):
        self.lengths32 = ""
        return torch_rnn(self, encoder, x)

    monkeypatch.setattr(onnx_export._Builder, "reverse", _full_reverse)
    monkeypatch.setattr(onnx_export._Builder, "torch_rnn", without_lengths)
    proto = build_onnx(model)
    with pytest.raises(AssertionError):
        max_difference_to_torch(model, session(proto))
    with pytest.raises(ValueError, match="differs from PyTorch"):
        compare_with_torch(model, proto)  # what export_onnx runs before writing


def test_export_onnx_writes_a_checked_graph_and_refuses_what_it_cannot_express(tmp_path):
    model = make_model("sligru-bi-relu")
    path = export_onnx(model, tmp_path / "m.onnx")
    assert compare_with_torch(model, path) < ATOL
    lstm = AcousticModel(FEATURES, OUTPUTS, {"name": "lstm", "hidden_size": 8, "proj_size": 4})
    with pytest.raises(ValueError, match="proj_size"):
        build_onnx(lstm)


ISOLATED = r"""
import json, sys
folder, site_dirs, *audio = sys.argv[1:]
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"recipes", "tests", "lightning", "hydra", "omegaconf"}:
            raise ModuleNotFoundError(f"No module named {name!r} (refused)", name=name)
sys.meta_path.insert(0, Refuse())
sys.path[:0] = [folder]
sys.path += site_dirs.split(":")
import recognizer_runtime
recognizer = recognizer_runtime.load(backend="onnx")
phones = [[p.phone for p in timed] for timed in recognizer.transcribe_batch(audio)]
print(json.dumps({"phones": phones, "onnx_loaded": "onnx" in sys.modules}))
"""


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> list[Path]:
    return write_audio(tmp_path_factory.mktemp("audio"))[:3]


@pytest.mark.slow
def test_packaged_onnx_model_transcribes_as_the_torch_model(tmp_path, data_dir, audio):
    """A CTC checkpoint (convolutional front end, bidirectional Light GRU with batch norm)
    exported by the entry point with onnx=true: the same greedy phones and posteriors through
    the runtime's onnx backend, in the repository and in the package alone."""
    checkpoint = save_checkpoint(build("ctc", seed=1, frontend=[32]), tmp_path / "best.ckpt")
    folder = tmp_path / "package"
    run_entry("export", [f"ckpt_path={checkpoint}", f"out={folder}", "onnx=true"], data_dir,
              tmp_path / "run")  # fmt: skip
    assert (folder / ONNX_FILE).is_file() and "## ONNX" in (folder / "MODEL_CARD.md").read_text()
    torch_rec = Recognizer.from_package(folder)
    onnx_rec = PhoneRecognizer.from_directory(folder, backend="onnx")
    assert onnx_rec.device == torch.device("cpu")
    for ours, theirs in zip(onnx_rec.posteriors_batch(audio), torch_rec.posteriors_batch(audio),
                            strict=True):  # fmt: skip
        torch.testing.assert_close(ours, theirs, atol=ATOL, rtol=0)
    phones = [[p.phone for p in timed] for timed in torch_rec.transcribe_batch(audio)]
    assert [[p.phone for p in timed] for timed in onnx_rec.transcribe_batch(audio)] == phones
    assert any(phones)
    site_dirs = ":".join(sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")}))
    command = [sys.executable, "-I", "-S", "-c", ISOLATED, str(folder), site_dirs, *map(str, audio)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {"phones": phones, "onnx_loaded": False}


@pytest.mark.slow
def test_int8_package_with_onnx_runs_the_quantised_model(tmp_path, audio):
    """The package's int8 model through onnxruntime: PyTorch's int8 posteriors but for rounding
    flips (see ``compare_with_torch``; these random, scaled-up weights saturate tanh states,
    which makes flips common), so compared by size against what int8 changes and by frames."""
    module = build("ctc", seed=2)
    folder = export_package(module, tmp_path / "int8", quantize="int8", onnx=True)
    torch_rec = Recognizer.from_package(folder)
    onnx_rec = PhoneRecognizer.from_directory(folder, backend="onnx")
    float_rec = Recognizer.from_module(build("ctc", seed=2))
    for path in audio:
        ours, theirs, exact = (r.posteriors(path) for r in (onnx_rec, torch_rec, float_rec))
        assert (ours - theirs).abs().mean() < 0.25 * (exact - theirs).abs().mean()
        assert (ours.argmax(-1) == theirs.argmax(-1)).double().mean() > 0.95
        assert np.isfinite(ours.numpy()).all()
    with pytest.raises(FileNotFoundError, match="onnx=true"):
        PhoneRecognizer.from_directory(export_package(module, tmp_path / "plain"), backend="onnx")
    with pytest.raises(ValueError, match="backend must be one of"):
        PhoneRecognizer.from_directory(folder, backend="tflite")
    with pytest.raises(ValueError, match="runs on the CPU"):
        onnx_rec.to("cuda")
