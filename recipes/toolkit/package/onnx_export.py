"""The acoustic model as an ONNX graph built from its weights: any rnn type, batch and length.

The graph takes ``features`` float32 ``[batch, time, features]`` (normalised, as the model
takes them) and ``lengths`` int64 ``[batch]`` (valid frames, each in ``[1, time]``, in any
order) and gives ``log_probs`` float32 ``[batch, time, classes]``. Batch and time are free.
Whatever padded frames hold changes no valid output, and padded outputs equal PyTorch's (the
log-softmax of the output bias: every encoder's output is zero there).

Why the graph is written here from the weights rather than traced from PyTorch:

* ``torch.onnx.export(dynamo=True)`` (``torch.export``) cannot take the lengths route of the
  torch-wrapped layers (:mod:`rnnlib.torch_rnn` reads ``lengths.tolist()`` and runs one fused
  call per stretch of equal lengths) nor the Light GRU's kernel (an autograd Function with a
  Python loop over time). Without lengths an earlier attempt exported GRU and LSTM, but the
  graph held a Reshape sized for the traced length: onnxruntime failed at any other length.
* The legacy TorchScript exporter (``dynamo=False``) traces that Python with the example's
  values: for the GRU it fails on the ``argsort`` that orders unsorted lengths; for the Light
  GRU it "succeeds" with the example's lengths and its loop over their frames as constants,
  leaving a graph without a ``lengths`` input.
* Writing the graph is short, because ONNX has what the model needs as standard operators:
  ``RNN``, ``GRU`` (``linear_before_reset=1`` is torch's GRU) and ``LSTM`` take
  ``sequence_lens`` and start a bidirectional layer's backward direction at each sequence's
  last valid frame themselves; the Light GRU's recurrence is one ``Scan`` whose body is one
  step (``U h``, SLi-GRU's layer norm of it, the gates, the state held on padded frames), and
  its backward direction reads its input turned around within each length by
  ``ReverseSequence`` (what :func:`rnnlib.sequence.reverse_padded` does). No operator holds a
  shape: time and batch come from the inputs at run time.

So the graph is a pure function of the weights, written the way the layers compute; it is
checked against PyTorch (:func:`compare_with_torch`, run by :func:`export_onnx` and the tests)
rather than assumed equal. Covered: ``rnn`` (tanh, relu), ``lstm`` (no ``proj_size``),
``gru``, ``ligru`` and ``sligru`` (every nonlinearity, batchnorm / layernorm / none, separate or
shared directions), unidirectional or bidirectional, any number of layers, with or without
bias, and the convolutional front end (``model.frontend_channels``; not the CRDNN's 2-D front
end or DNN blocks: refused with a ``TypeError``). Each op is given the arithmetic form torch
computes where a rounding could matter (the Light GRU's state update is ``torch.lerp``'s, states
in ``[-1, 1]`` are clipped to it). Float32 graphs still differ from PyTorch in the last bits of
onnxruntime's own tanh, sigmoid and products, which the recurrence carries: the largest
log-posterior difference :func:`compare_with_torch` finds was 1.3e-5 for a trained default
model (``rnn=sligru``) and 5e-5 for the tests' random weights scaled 3x (saturated states),
against its tolerance of 1e-4.

int8 models (:mod:`recipes.toolkit.package.quantize`): each dynamically quantised linear layer
quantises its input as torch's kernel does, per call over the whole batch (range with zero,
7-bit scale, zero point, rounding: the same integers, see :meth:`_Builder.activation_quantization`)
after zeroing padded frames (so: as PyTorch on a zero-padded batch, which is what the runtime
gives it, and unaffected by padding), then an int8 ``MatMulInteger``. The same arithmetic is not
the same numbers everywhere: a float32 rounding difference upstream (onnxruntime's tanh against
torch's, on a state next to saturation) can put an activation on the other side of a rounding
boundary, one quantisation step off, which the recurrence carries on; :func:`compare_with_torch`
checks int8 graphs by how much smaller their difference is than the quantisation's own effect.

>>> import torch
>>> from recipes.toolkit.model import AcousticModel
>>> model = AcousticModel(8, 5, {"name": "sligru", "hidden_size": 6, "bidirectional": True})
>>> proto = build_onnx(model)
>>> [i.name for i in proto.graph.input], [o.name for o in proto.graph.output]
(['features', 'lengths'], ['log_probs'])
>>> compare_with_torch(model, proto) < 1e-4
True
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from copy import deepcopy
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from recipes.toolkit.model import ConvFrontEnd
from rnnlib.ligru import LiGRU
from rnnlib.ligru.pointwise import LAYER_NORM_EPS, LEAKY_RELU_SLOPE
from rnnlib.torch_rnn import _TorchRecurrent

__all__ = ["INPUTS", "OPSET", "OUTPUT", "build_linear_onnx", "build_onnx", "compare_with_torch",
           "export_onnx"]  # fmt: skip

OPSET = 17  # LayerNormalization; onnxruntime >= 1.14 runs it
INPUTS = ("features", "lengths")
OUTPUT = "log_probs"
TOLERANCE = 1e-4  # max abs difference of log-posteriors accepted by compare_with_torch
INT8_RATIO = 0.5  # an int8 graph: mean difference / mean change by quantising the activations
# ONNX gate order from torch's: GRU r,z,n -> z,r,h; LSTM i,f,g,o -> i,o,f,c.
GATE_ORDER = {"GRU": (1, 0, 2), "LSTM": (0, 3, 1, 2), "RNN_TANH": (0,), "RNN_RELU": (0,)}
LIGRU_ACTIVATIONS = {"relu": ("Relu", {}), "tanh": ("Tanh", {}), "sin": ("Sin", {}),
                     "leaky_relu": ("LeakyRelu", {"alpha": LEAKY_RELU_SLOPE})}  # fmt: skip


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().to(torch.float32).numpy()


def _quantized_linear_types() -> tuple[type, ...]:
    return (torch.ao.nn.quantized.dynamic.Linear,)


class _Graph:
    """Nodes and initializers of one ONNX graph; a ``Scan`` body shares the names and puts its
    constants in the outer graph (a body may read outer-scope values)."""

    def __init__(self, parent: _Graph | None = None):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers = parent.initializers if parent else []
        self._counter = parent._counter if parent else itertools.count()

    def fresh(self, hint: str) -> str:
        return f"{hint}_{next(self._counter)}"

    def constant(self, value, hint: str = "const", dtype=None) -> str:
        array = np.asarray(value, dtype=dtype)
        if array.dtype == np.float64 and dtype is None:
            array = array.astype(np.float32)
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def ints(self, *values: int) -> str:
        return self.constant(np.array(values, dtype=np.int64), "ints")

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs):
        names = [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names


class _Builder:
    """Writes the acoustic model's graph; activations run time-major ``[time, batch, ...]``."""

    def __init__(self, model: nn.Module | None):
        self.model = model
        self.g = _Graph()

    def build(self) -> onnx.ModelProto:
        g, model = self.g, self.model
        x = self._inputs()
        front = getattr(model, "frontend", None)
        if front is not None:
            if type(front) is not ConvFrontEnd:
                raise TypeError(f"no ONNX form for the front end {type(front).__name__}")
            x = self.frontend(front, x)
        encoder = model.encoder
        if isinstance(encoder, LiGRU):
            x = self.ligru(encoder, x)
        elif isinstance(encoder, _TorchRecurrent):
            x = self.torch_rnn(encoder, x)
        else:
            raise TypeError(f"no ONNX form for the encoder {type(encoder).__name__}")
        x = g.op("Mul", x, self.valid_f)  # padded frames zero, as every encoder gives them
        logits = self.linear(model.output, x)
        size = front.convs[0].in_channels if front is not None else encoder.input_size
        return self._model(
            g.op("LogSoftmax", logits, axis=-1),
            size,
            model.output.out_features,
            f"{type(encoder).__name__} acoustic model: log-posteriors of features",
        )

    def build_linear(self, layer: nn.Module) -> onnx.ModelProto:
        weight = layer.weight() if callable(layer.weight) else layer.weight
        x = self.g.op("Mul", self._inputs(), self.valid_f)
        return self._model(self.linear(layer, x), weight.shape[1], weight.shape[0],
                           f"{type(layer).__name__} of every frame")  # fmt: skip

    def _inputs(self) -> str:
        """Masks and lengths the layers use; returns the features, time-major."""
        g = self.g
        features, lengths = INPUTS
        steps = g.op("Range", g.constant(0, dtype=np.int64),
                     g.op("Gather", g.op("Shape", features), g.constant(1, dtype=np.int64)),
                     g.constant(1, dtype=np.int64))  # fmt: skip
        # valid frames, [time, batch] (bool) and [time, batch, 1] (float)
        self.valid = g.op("Less", g.op("Unsqueeze", steps, g.ints(1)),
                          g.op("Unsqueeze", lengths, g.ints(0)))  # fmt: skip
        self.valid_f = g.op("Unsqueeze", g.op("Cast", self.valid, to=TensorProto.FLOAT), g.ints(2))
        self.lengths32 = g.op("Cast", lengths, to=TensorProto.INT32)
        self.batch = g.op("Shape", lengths)
        return g.op("Transpose", features, perm=[1, 0, 2])

    def _model(self, out: str, size: int, outputs: int, doc: str) -> onnx.ModelProto:
        """The checked model whose output is time-major ``out`` turned batch-major."""
        g = self.g
        g.nodes.append(helper.make_node("Transpose", [out], [OUTPUT], perm=[1, 0, 2]))
        features, lengths = INPUTS
        graph = helper.make_graph(
            g.nodes,
            "acoustic_model",
            [helper.make_tensor_value_info(features, TensorProto.FLOAT,
                                           ["batch", "time", int(size)]),
             helper.make_tensor_value_info(lengths, TensorProto.INT64, ["batch"])],
            [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT,
                                           ["batch", "time", int(outputs)])],
            g.initializers,
        )  # fmt: skip
        proto = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="rnnlib-recipes",
            doc_string=doc,
        )
        proto.ir_version = 8  # that of opset 17 (onnx 1.12): what older runtimes read
        onnx.checker.check_model(proto, full_check=True)
        return proto

    # ----- linear layers (float or dynamically quantised int8) ---------------------------------
    def linear(self, layer: nn.Module, x: str, affine=None) -> str:
        """``x [time, batch, in] -> layer(x)``; ``affine = (scale, shift)`` is applied after it
        (a batch norm in evaluation, folded into the weights of a float layer)."""
        g = self.g
        if type(layer) is nn.Linear:
            weight, bias = _numpy(layer.weight), None if layer.bias is None else _numpy(layer.bias)
            if affine is not None:
                scale, shift = (_numpy(t) for t in affine)
                weight = weight * scale[:, None]
                bias = shift if bias is None else bias * scale + shift
            y = g.op("MatMul", x, g.constant(weight.T, "weight"))
            return y if bias is None else g.op("Add", y, g.constant(bias, "bias"))
        if isinstance(layer, _quantized_linear_types()):
            y = self.quantized_linear(layer, x)
            if affine is not None:
                scale, shift = (_numpy(t) for t in affine)
                y = g.op("Add", g.op("Mul", y, g.constant(scale, "scale")),
                         g.constant(shift, "shift"))  # fmt: skip
            return y
        raise TypeError(f"no ONNX form for the linear layer {type(layer).__name__}")

    def quantized_linear(self, layer: nn.Module, x: str) -> str:
        """torch's dynamic int8 linear: ``x`` quantised to uint8 with the scale and zero point
        of its own range (see :meth:`activation_quantization`), an int8 product, float32 out."""
        g = self.g
        weight = layer.weight()
        if weight.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            w_scale = np.float32(weight.q_scale())
            w_zero = np.int8(weight.q_zero_point())
        else:  # per output channel
            w_scale = weight.q_per_channel_scales().numpy().astype(np.float32)
            w_zero = weight.q_per_channel_zero_points().numpy().astype(np.int8)
        x = g.op("Mul", x, self.valid_f)  # the range of a zero-padded batch, whatever the padding
        scale, zero = self.activation_quantization(x)
        # fbgemm: round(x * (1 / scale)) (float32, to the nearest even), then the zero point
        q = g.op("Round", g.op("Mul", x, g.op("Reciprocal", scale)))
        q = g.op("Clip", g.op("Add", q, zero), g.constant(0.0), g.constant(255.0))
        product = g.op("MatMulInteger", g.op("Cast", q, to=TensorProto.UINT8),
                       g.constant(weight.int_repr().numpy().T, "weight_int8"),
                       g.op("Cast", zero, to=TensorProto.UINT8),
                       g.constant(w_zero, "weight_zero"))  # fmt: skip
        gain = g.op("Mul", scale, g.constant(w_scale, "weight_scale"))
        y = g.op("Mul", g.op("Cast", product, to=TensorProto.FLOAT), gain)
        bias = layer.bias()
        return y if bias is None else g.op("Add", y, g.constant(_numpy(bias), "bias"))

    def activation_quantization(self, x: str) -> tuple[str, str]:
        """``(scale, zero point)`` (float32 scalars) of torch's dynamic quantisation of ``x``,
        its ``ChooseQuantizationParams`` with ``reduce_range`` (levels 0..127): the range
        ``[min(x, 0), max(x, 0)]``, the scale in float64 (0.1 for an all-zero ``x``, at least
        6.1e-5 with the range widened to match), the zero point from whichever end adds the
        smaller rounding error, to the nearest even integer."""
        g = self.g

        def f64(value: float) -> str:
            return g.constant(value, dtype=np.float64)

        def where(condition: str, yes: str, no: str) -> str:
            return g.op("Where", condition, yes, no)

        def double(name: str) -> str:
            return g.op("Cast", name, to=TensorProto.DOUBLE)

        levels, small = 127.0, np.float32(6.1e-5)
        low = g.op("Min", g.op("ReduceMin", x, keepdims=0), g.constant(0.0))
        high = g.op("Max", g.op("ReduceMax", x, keepdims=0), g.constant(0.0))
        scale = g.op("Div", g.op("Sub", double(high), double(low)), f64(levels))
        scale_f = g.op("Cast", scale, to=TensorProto.FLOAT)
        scale = where(g.op("Equal", scale_f, g.constant(0.0)), f64(0.1), scale)
        # a scale under 6.1e-5 becomes 6.1e-5; the range grows by as much (float32 arithmetic)
        tiny = g.op("Less", scale, f64(float(small)))
        amplifier = g.op("Div", g.constant(small), g.op("Cast", scale, to=TensorProto.FLOAT))
        low_zero, high_zero = (g.op("Equal", v, g.constant(0.0)) for v in (low, high))
        full = g.constant(small * np.float32(levels))
        low_tiny = where(high_zero, g.op("Neg", full), g.op("Mul", low, amplifier))
        high_tiny = where(high_zero, high, g.op("Mul", high, amplifier))
        low = where(tiny, where(low_zero, low, low_tiny), low)
        high = where(tiny, where(low_zero, full, high_tiny), high)
        scale = where(tiny, f64(float(small)), scale)
        # the zero point from the end with the smaller error, rounded to the nearest even
        low_steps, high_steps = (g.op("Div", double(v), scale) for v in (low, high))
        from_low, from_high = g.op("Neg", low_steps), g.op("Sub", f64(levels), high_steps)
        low_error = g.op("Neg", g.op("Abs", low_steps))
        high_error = g.op("Sub", f64(levels), g.op("Abs", high_steps))
        zero = where(g.op("Less", low_error, high_error), from_low, from_high)
        zero = g.op("Clip", g.op("Round", zero), f64(0.0), f64(levels))
        return (g.op("Cast", scale, to=TensorProto.FLOAT),
                g.op("Cast", zero, to=TensorProto.FLOAT))  # fmt: skip

    # ----- convolutional front end --------------------------------------------------------------
    def frontend(self, front: nn.Module, x: str) -> str:
        g = self.g
        for conv, norm in zip(front.convs, front.norms, strict=True):
            x = g.op("Mul", x, self.valid_f)
            y = g.op("Transpose", x, perm=[1, 2, 0])  # [batch, channels, time]
            inputs = [g.constant(_numpy(conv.weight), "conv_weight")]
            if conv.bias is not None:
                inputs.append(g.constant(_numpy(conv.bias), "conv_bias"))
            (k,), (p,), (d,), (s,) = conv.kernel_size, conv.padding, conv.dilation, conv.stride
            if s != 1 or conv.groups != 1 or not isinstance(p, int):
                raise ValueError("the front end's convolutions are stride 1, one group")
            y = g.op("Conv", y, *inputs, kernel_shape=[k], pads=[p, p], dilations=[d])
            y = g.op("Transpose", y, perm=[2, 0, 1])
            x = g.op("LeakyRelu", self.layer_norm(norm, y), alpha=0.01)
        return g.op("Mul", x, self.valid_f)

    def layer_norm(self, norm: nn.LayerNorm, x: str) -> str:
        g = self.g
        size = norm.normalized_shape[-1]
        weight = _numpy(norm.weight) if norm.weight is not None else np.ones(size, np.float32)
        inputs = [x, g.constant(weight, "ln_scale")]
        if norm.bias is not None:
            inputs.append(g.constant(_numpy(norm.bias), "ln_bias"))
        return g.op("LayerNormalization", *inputs, axis=-1, epsilon=float(norm.eps))

    # ----- torch.nn RNN, LSTM, GRU: ONNX's own operators ----------------------------------------
    def torch_rnn(self, encoder: _TorchRecurrent, x: str) -> str:
        g, rnn = self.g, encoder.rnn
        if getattr(rnn, "proj_size", 0):
            raise ValueError("an LSTM with proj_size has no ONNX LSTM form")
        mode, hidden = rnn.mode, rnn.hidden_size
        op_type = {"GRU": "GRU", "LSTM": "LSTM"}.get(mode, "RNN")
        directions = 2 if rnn.bidirectional else 1
        attrs = {"hidden_size": hidden,
                 "direction": "bidirectional" if directions == 2 else "forward"}  # fmt: skip
        if mode == "GRU":
            attrs["linear_before_reset"] = 1
        if op_type == "RNN":
            attrs["activations"] = ["Relu" if mode == "RNN_RELU" else "Tanh"] * directions
        order = GATE_ORDER[mode]
        for layer in range(rnn.num_layers):
            w, r, b = [], [], []
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                w.append(_gates(getattr(rnn, "weight_ih" + suffix), order, hidden))
                r.append(_gates(getattr(rnn, "weight_hh" + suffix), order, hidden))
                if rnn.bias:
                    b.append(np.concatenate([_gates(getattr(rnn, "bias_ih" + suffix), order,
                                                    hidden),
                                             _gates(getattr(rnn, "bias_hh" + suffix), order,
                                                    hidden)]))  # fmt: skip
            inputs = [x, g.constant(np.stack(w), "W"), g.constant(np.stack(r), "R"),
                      g.constant(np.stack(b), "B") if b else "", self.lengths32]  # fmt: skip
            outputs = 3 if op_type == "LSTM" else 2
            y = g.op(op_type, *inputs, outputs=outputs, **attrs)[0]  # [time, D, batch, H]
            y = g.op("Transpose", y, perm=[0, 2, 1, 3])
            x = g.op("Reshape", y, g.ints(0, 0, -1))  # [time, batch, D * H]
            if mode != "RNN_RELU":  # states in [-1, 1], a saturated one at 1.0 as in torch
                x = g.op("Clip", x, g.constant(-1.0), g.constant(1.0))
        return x

    # ----- Light GRU and SLi-GRU: a Scan over time ----------------------------------------------
    def ligru(self, encoder: LiGRU, x: str) -> str:
        for directions in encoder.layers:
            x = self.ligru_layer(encoder, directions, x)
        return x

    def ligru_layer(self, encoder: LiGRU, directions: nn.ModuleList, x: str) -> str:
        g, hidden = self.g, encoder.hidden_size
        count = encoder.num_directions
        weights = [d.weight_hh for d in directions]
        if encoder.share_directions:
            shared = self.projection(directions[0], x)
            inputs = [shared, self.reverse(shared)]
            weights = weights * 2
        else:
            inputs = [self.projection(d, x) for d in directions]
            if count == 2:
                inputs[1] = self.reverse(inputs[1])
        stacked = g.op("Concat", *(g.op("Unsqueeze", a, g.ints(1)) for a in inputs), axis=1)
        u_t = np.stack([_numpy(w).T for w in weights])  # [D, H, 2H]
        h0 = g.op("ConstantOfShape", g.op("Concat", g.ints(count), self.batch, g.ints(hidden),
                                          axis=0),
                  value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]))  # fmt: skip
        valid_steps = g.op("Unsqueeze", self.valid, g.ints(1, 3))  # [time, 1, batch, 1]
        body = self.ligru_step(u_t, hidden, encoder.nonlinearity, encoder.recurrent_norm)
        _, states = g.op("Scan", h0, stacked, valid_steps, outputs=2, body=body,
                         num_scan_inputs=2)  # fmt: skip
        # states [time, D, batch, H], zero on padded frames
        if count == 1:
            return g.op("Squeeze", states, g.ints(1))
        forward, backward = g.op("Split", states, g.ints(1, 1), axis=1, outputs=2)
        forward, backward = (g.op("Squeeze", s, g.ints(1)) for s in (forward, backward))
        return g.op("Concat", forward, self.reverse(backward), axis=-1)

    def projection(self, direction: nn.Module, x: str) -> str:
        """``a = norm(W x)`` of every frame, ``[time, batch, 2H]`` (the model in evaluation)."""
        if direction.normalization == "batchnorm":
            norm = direction.norm
            if norm.running_mean is None:
                raise ValueError("a batch norm without running statistics has no fixed form")
            return self.linear(direction.w, x, affine=norm.folded_affine())
        a = self.linear(direction.w, x)
        if direction.normalization == "layernorm":
            a = self.layer_norm(direction.norm, a)
        return a

    def reverse(self, x: str) -> str:
        """Each sequence of time-major ``x`` turned around within its length."""
        return self.g.op("ReverseSequence", x, INPUTS[1], batch_axis=1, time_axis=0)

    def ligru_step(self, u_t: np.ndarray, hidden: int, nonlinearity: str, norm: bool):
        """The Scan body: ``(h [D, batch, H]; a_t [D, batch, 2H], valid_t [1, batch, 1]) ->
        (h_t; h_t zeroed where padded)``."""
        body = _Graph(self.g)
        h, a, valid = body.fresh("h"), body.fresh("a_t"), body.fresh("valid_t")
        u = body.op("MatMul", h, body.constant(u_t, "U"))
        if norm:  # SLi-GRU: layer norm without affine
            ones = body.constant(np.ones(2 * hidden, np.float32), "ones")
            u = body.op("LayerNormalization", u, ones, axis=-1, epsilon=LAYER_NORM_EPS)
        pre_z, pre_c = body.op("Split", body.op("Add", a, u), body.ints(hidden, hidden), axis=-1,
                               outputs=2)  # fmt: skip
        z = body.op("Sigmoid", pre_z)
        activation, attrs = LIGRU_ACTIVATIONS[nonlinearity]
        c = body.op(activation, pre_c, **attrs)
        if nonlinearity in ("tanh", "sin"):  # onnxruntime's tanh can pass 1 by a rounding
            c = body.op("Clip", c, body.constant(-1.0), body.constant(1.0))
        # h_t = z h + (1 - z) c as torch.lerp(c, h, z) forms it (the kernel's own step): exact
        # where h = c, never outside [c, h] (a saturated tanh state stays at 1.0, so that an int8
        # layer after it sees torch's range)
        d = body.op("Sub", h, c)
        h_new = body.op(
            "Where",
            body.op("Less", z, body.constant(0.5)),
            body.op("Add", c, body.op("Mul", z, d)),
            body.op("Sub", h, body.op("Mul", d, body.op("Sub", body.constant(1.0), z))),
        )
        h_out = body.op("Where", valid, h_new, h)  # padded frames hold the state
        y = body.op("Where", valid, h_new, body.constant(0.0))
        float_info = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
                      for name in (h, a)]  # fmt: skip
        return helper.make_graph(
            body.nodes,
            "ligru_step",
            [*float_info, helper.make_tensor_value_info(valid, TensorProto.BOOL, None)],
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in (h_out, y)],
        )  # fmt: skip


def _gates(tensor: torch.Tensor, order: Sequence[int], hidden: int) -> np.ndarray:
    """torch's gate blocks (rows of ``hidden``) in ONNX's order."""
    blocks = _numpy(tensor).reshape(len(order), hidden, *tensor.shape[1:])
    return np.concatenate([blocks[i] for i in order])


def build_onnx(model: nn.Module) -> onnx.ModelProto:
    """The ONNX graph of an :class:`~recipes.toolkit.model.AcousticModel` in evaluation
    (dropout off, batch norms on their running statistics), float32 or int8-quantised.

    >>> from recipes.toolkit.model import AcousticModel
    >>> proto = build_onnx(AcousticModel(8, 5, {"name": "lstm", "hidden_size": 4}))
    >>> sorted({node.op_type for node in proto.graph.node} & {"LSTM", "Scan"})
    ['LSTM']
    """
    return _Builder(model).build()


def build_linear_onnx(layer: nn.Module) -> onnx.ModelProto:
    """The graph of one linear layer (``nn.Linear`` or torch's dynamically quantised one) as the
    acoustic model's graph writes it: ``features [batch, time, in]`` and ``lengths`` ->
    ``log_probs`` (here: the layer's output, zero-padded input), to check the int8 arithmetic
    on its own.

    >>> layer = nn.Linear(3, 2)
    >>> [d.dim_value for d in build_linear_onnx(layer).graph.output[0].type.tensor_type.shape.dim]
    [0, 0, 2]
    """
    return _Builder(None).build_linear(layer)


def export_onnx(
    model: nn.Module, path: str | os.PathLike, verify: bool = True, atol: float = TOLERANCE
) -> Path:
    """Write the ONNX graph of ``model`` (see :func:`build_onnx`) to ``path``; with ``verify``
    (onnxruntime installed) first check it against PyTorch (:func:`compare_with_torch`).

    >>> import tempfile
    >>> from recipes.toolkit.model import AcousticModel
    >>> model = AcousticModel(8, 5, {"name": "gru", "hidden_size": 4, "bidirectional": True})
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     export_onnx(model, Path(folder) / "model.onnx").stat().st_size > 0
    True
    """
    proto = build_onnx(model)
    if verify:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as error:
            raise ImportError("verify=True runs the graph with onnxruntime: install it, or "
                              "pass verify=False for an unchecked graph") from error  # fmt: skip
        compare_with_torch(model, proto, atol=atol)
    path = Path(path)
    onnx.save_model(proto, path)
    return path


def compare_with_torch(
    model: nn.Module,
    proto: onnx.ModelProto | str | os.PathLike,
    lengths: Sequence[Sequence[int]] = ((13, 29, 5), (41, 17, 41, 8, 30)),
    atol: float | None = TOLERANCE,
    seed: int = 0,
) -> float:
    """Largest ``|onnxruntime - PyTorch|`` of the log-posteriors over valid frames, for random
    features in batches of ``lengths`` (each batch padded to its longest plus 3 frames; the
    ONNX input's padding is noise, PyTorch's zeros); ``ValueError`` when over ``atol``.

    An int8 model is equal to torch's only up to float32 rounding upstream of a quantised layer,
    which can move an activation across a rounding boundary of its 7-bit grid (a saturated tanh
    state is the usual one: onnxruntime's tanh and torch's differ in the last bit). So it passes
    when the mean difference is at most :data:`INT8_RATIO` of the mean change that quantising the
    activations makes (PyTorch with the int8 weights in float32): a graph that skipped or
    misplaced the quantisation would differ by as much.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    serialized = proto.SerializeToString() if isinstance(proto, onnx.ModelProto) else str(proto)
    session = onnxruntime.InferenceSession(serialized, options, providers=["CPUExecutionProvider"])
    size = int(session.get_inputs()[0].shape[2])
    training = model.training
    model.eval()
    reference = _dequantized(model) if _quantized(model) else None
    try:
        worst, mean, change, where = _differences(model, reference, session, lengths, size, seed)
    finally:
        model.train(training)
    if reference is not None and atol is not None:
        if not mean <= INT8_RATIO * change:
            raise ValueError(f"the int8 ONNX graph differs from PyTorch's int8 model by {mean:.3g} "
                             f"on average, quantisation by {change:.3g}")  # fmt: skip
    elif atol is not None and not worst <= atol:
        raise ValueError(f"the ONNX graph differs from PyTorch by {worst:.3g} (> {atol:g}) {where}")
    return worst


def _quantized(model: nn.Module) -> bool:
    return any(isinstance(m, _quantized_linear_types()) for m in model.modules())


def _dequantized(model: nn.Module) -> nn.Module:
    """A copy of an int8 model with float32 linear layers holding its int8 weights."""
    copy = deepcopy(model)
    for module in list(copy.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, _quantized_linear_types()):
                bias = child.bias()
                linear = nn.Linear(child.in_features, child.out_features, bias=bias is not None)
                with torch.no_grad():
                    linear.weight.copy_(child.weight().dequantize())
                    if bias is not None:
                        linear.bias.copy_(bias)
                setattr(module, name, linear)
    return copy.eval()


def _differences(model, reference, session, lengths, size, seed) -> tuple[float, float, float, str]:
    """``(max, mean)`` of ``|ONNX - model|``, the mean ``|reference - model|`` (0 without) and
    where the max is (batch lengths, sequence, frame, output, PyTorch's value there)."""
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters(), torch.zeros(())).device
    worst, diffs, changes, where = 0.0, [], [], ""
    for batch_lengths in lengths:
        lens = torch.tensor(list(batch_lengths))
        time = int(lens.max()) + 3
        feats = torch.randn(len(lens), time, size, generator=generator)
        valid = torch.arange(time)[None, :] < lens[:, None]
        clean = feats * valid[..., None]
        noise = 50 * torch.randn(feats.shape, generator=generator)
        noisy = torch.where(valid[..., None], feats, noise)
        with torch.no_grad():
            expected = model(clean.to(device), lens.to(device)).float().cpu()
            if reference is not None:
                changes.append((reference(clean, lens) - expected).abs()[valid])
        (got,) = session.run(None, {INPUTS[0]: noisy.numpy(), INPUTS[1]: lens.numpy()})
        full = (torch.from_numpy(got) - expected).abs().nan_to_num(nan=float("inf"))  # NaN fails
        full = torch.where(valid[..., None], full, 0.0)
        diff = full[valid]
        largest = float(diff.max())
        if largest > worst:
            worst = largest
            b, t, k = (int(i) for i in torch.unravel_index(full.argmax(), full.shape))
            where = (f"at lengths {list(batch_lengths)}, sequence {b}, frame {t}, output {k} "
                     f"(PyTorch {float(expected[b, t, k]):.6g}, seed {seed})")  # fmt: skip
        diffs.append(diff)
    change = float(torch.cat(changes).mean()) if changes else 0.0
    return worst, float(torch.cat(diffs).mean()), change, where
