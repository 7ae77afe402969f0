// The Light GRU's loops over time as C++ loops of the same ATen operators that
// rnnlib/ligru/cpu_kernel.py calls from Python (_forward_loop and the inner loop of
// _backward_loop), in the same order with the same arguments: the results are bit-identical,
// only the interpreter's time per operator call is gone. The products mirror
// rnnlib/ligru/products.py's RecurrentProduct branch for branch (MKL's bmm, oneDNN's linear
// with packed weights, per-direction products, bfloat16 products added to float32). Built once
// per machine by rnnlib/ligru/cpp_loops.py (torch.utils.cpp_extension). Both loops release the
// GIL, so the directions' concurrent loops (rnnlib/ligru/parallel_directions.py) overlap fully.
#include <torch/extension.h>

#include <optional>
#include <tuple>
#include <utility>
#include <vector>

namespace {

constexpr double kLeakyReluSlope = 0.01;  // pointwise.LEAKY_RELU_SLOPE
constexpr double kLayerNormEps = 1e-5;    // pointwise.LAYER_NORM_EPS

// oneDNN's linear x W^T with W packed (torch_internals.onednn_product), called boxed: the
// same operator and arguments as from Python.
at::Tensor onednn_product(const at::Tensor& x, const at::Tensor& packed_weight) {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
  torch::jit::Stack stack{x,
                          packed_weight,
                          c10::IValue(),
                          c10::IValue(std::string("none")),
                          c10::IValue(c10::List<std::optional<at::Scalar>>()),
                          c10::IValue(std::string(""))};
  op.callBoxed(&stack);
  return stack[0].toTensor();
}

// products.RecurrentProduct: x -> x W_d^T per direction d, by the route fixed in Python.
struct Product {
  at::Tensor weight_t;              // [D, K, N]
  std::vector<at::Tensor> packed;   // oneDNN's packed W_d, one per direction (oneDNN route)
  at::ScalarType dtype;             // the products' dtype
  bool onednn;
  bool per_direction;

  at::Tensor operator()(const at::Tensor& x_in) const {  // RecurrentProduct.__call__
    const auto x = x_in.to(dtype);
    if (per_direction) {
      std::vector<at::Tensor> parts;
      for (int64_t d = 0; d < x.size(0); ++d) {
        parts.push_back(at::matmul(x.select(0, d), weight_t.select(0, d)));
      }
      return at::stack(parts);
    }
    if (!onednn) {
      return at::bmm(x, weight_t);
    }
    if (packed.size() == 1) {
      return onednn_product(x, packed[0]);
    }
    std::vector<at::Tensor> parts;
    for (size_t d = 0; d < packed.size(); ++d) {
      parts.push_back(onednn_product(x.select(0, d), packed[d]));
    }
    return at::stack(parts);
  }

  void add_into(at::Tensor& out, const at::Tensor& x) const {  // RecurrentProduct.add_into
    if (out.scalar_type() != dtype || per_direction) {
      out.add_((*this)(x));
    } else if (!onednn) {
      out.baddbmm_(x, weight_t);
    } else if (packed.size() == 1) {
      out.add_(onednn_product(x, packed[0]));
    } else {
      for (size_t d = 0; d < packed.size(); ++d) {
        out.select(0, d).add_(onednn_product(x.select(0, d), packed[d]));
      }
    }
  }

  void into(at::Tensor& out, const at::Tensor& x) const {  // RecurrentProduct.into
    if (out.scalar_type() == x.scalar_type() && x.scalar_type() == dtype &&
        !(onednn || per_direction)) {
      at::bmm_out(out, x, weight_t);
    } else {
      out.copy_((*this)(x));
    }
  }
};

// The candidate nonlinearity into ``out``, as pointwise.candidate_activation_into.
void candidate_into(const at::Tensor& x, const std::string& nonlinearity, at::Tensor& out) {
  if (nonlinearity == "relu") {
    at::clamp_min_out(out, x, 0);
  } else if (nonlinearity == "leaky_relu") {
    at::leaky_relu_out(out, x, kLeakyReluSlope);
  } else if (nonlinearity == "tanh") {
    at::tanh_out(out, x);
  } else if (nonlinearity == "sin") {
    at::sin_out(out, x);
  } else {
    TORCH_CHECK(false, "unknown nonlinearity ", nonlinearity);
  }
}

// cpu_kernel._forward_loop: fills states[:, 1:] and turns gates (holding a) into the gate
// pre-activations. gates [D, T, B, 2H], states [D, T + 1, B, H], valid [T, B, 1] bool,
// drop_mask [D, B, H]; the product's state comes from RecurrentProduct.
void forward_loop(at::Tensor gates, at::Tensor states, const Product& product,
                  const std::optional<at::Tensor>& valid,
                  const std::optional<at::Tensor>& drop_mask, const std::string& nonlinearity,
                  bool recurrent_norm) {
  const int64_t time = gates.size(1);
  const int64_t hidden = states.size(-1);
  auto z = at::empty(states.select(1, 0).sizes(), states.options());  // contiguous buffers
  auto c = at::empty_like(z);
  at::Tensor fresh = valid ? at::empty_like(z) : at::Tensor();
  at::Tensor u = recurrent_norm ? at::empty(gates.select(1, 0).sizes(), gates.options())
                                : at::Tensor();
  const std::vector<int64_t> norm_shape{2 * hidden};
  for (int64_t t = 0; t < time; ++t) {
    auto g = gates.select(1, t);
    const auto h_prev = states.select(1, t);
    auto h_next = states.select(1, t + 1);
    if (recurrent_norm) {
      product.into(u, h_prev);  // in the states' precision, for the norm
      g.add_(std::get<0>(at::native_layer_norm(u, norm_shape, {}, {}, kLayerNormEps)));
    } else {
      product.add_into(g, h_prev);
    }
    at::sigmoid_out(z, g.narrow(-1, 0, hidden));
    candidate_into(g.narrow(-1, hidden, hidden), nonlinearity, c);
    if (drop_mask) {
      c.mul_(*drop_mask);
    }
    if (!valid) {
      at::lerp_out(h_next, c, h_prev, z);
    } else {
      at::lerp_out(fresh, c, h_prev, z);
      at::where_out(h_next, valid->select(0, t), fresh, h_prev);
    }
  }
}

// The steps end - 1 down to start of cpu_kernel._backward_loop's inner loop: turns grad_gates'
// coefficients into the gates' gradient and carries dh back (product: dgates -> dgates U). For
// SLi-GRU u holds U h per step [D, T, B, 2H] (overwritten with its gradient) and mean, rstd
// its layer-norm statistics [T, D, B, 1]. Returns the new (dh, spare).
std::tuple<at::Tensor, at::Tensor> backward_steps(
    at::Tensor grad_gates, const at::Tensor& zeta, const Product& product,
    const at::Tensor& grad_out, at::Tensor dh, at::Tensor spare, int64_t start, int64_t end,
    const std::optional<at::Tensor>& u, const std::optional<at::Tensor>& mean,
    const std::optional<at::Tensor>& rstd) {
  const int64_t directions = grad_gates.size(0);
  const int64_t batch = grad_gates.size(2);
  const int64_t hidden = grad_gates.size(3) / 2;
  const std::vector<int64_t> norm_shape{2 * hidden};
  for (int64_t t = end - 1; t >= start; --t) {
    auto dg = grad_gates.select(1, t);
    dg.view({directions, batch, 2, hidden}).mul_(dh.unsqueeze(2));
    if (u) {
      auto u_t = u->select(1, t);
      auto du = std::get<0>(at::native_layer_norm_backward(
          dg, u_t, norm_shape, mean->select(0, t), rstd->select(0, t), {}, {},
          {true, false, false}));
      u_t.copy_(du);
      dg = du;
    }
    if (t > 0) {
      at::addcmul_out(spare, grad_out.select(1, t - 1), dh, zeta.select(1, t - start));
    } else {
      at::mul_out(spare, dh, zeta.select(1, 0));
    }
    product.add_into(spare, dg);
    std::swap(dh, spare);
  }
  return {dh, spare};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<Product>(m, "Product")
      .def(py::init([](at::Tensor weight_t, std::vector<at::Tensor> packed, py::object dtype,
                       bool onednn, bool per_direction) {
        const auto scalar_type = torch::python::detail::py_object_to_dtype(dtype);
        return Product{weight_t, packed, scalar_type, onednn, per_direction};
      }));
  m.def("forward_loop", &forward_loop, py::call_guard<py::gil_scoped_release>());
  m.def("backward_steps", &backward_steps, py::call_guard<py::gil_scoped_release>());
}
