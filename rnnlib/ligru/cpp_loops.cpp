// The Light GRU's loops over time steps as C++ loops of the same ATen operators that
// rnnlib/ligru/cpu_kernel.py calls from Python (_forward_loop and the inner loop of
// _backward_loop), in the same order with the same arguments: the results are bit-identical,
// only the interpreter's time per operator call is gone. Built once per machine by
// rnnlib/ligru/cpp_loops.py (torch.utils.cpp_extension); they run float32 with the BLAS
// route's products (baddbmm / bmm). Both functions release the GIL, so the directions'
// concurrent loops (rnnlib/ligru/parallel_directions.py) run in parallel.
#include <torch/extension.h>

#include <optional>
#include <tuple>
#include <utility>
#include <vector>

namespace {

constexpr double kLeakyReluSlope = 0.01;  // pointwise.LEAKY_RELU_SLOPE
constexpr double kLayerNormEps = 1e-5;    // pointwise.LAYER_NORM_EPS

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

// cpu_kernel._forward_loop with the BLAS product: fills states[:, 1:] and turns gates (holding
// a) into the gate pre-activations. gates [D, T, B, 2H], states [D, T + 1, B, H],
// weight_hh [D, 2H, H], valid [T, B, 1] bool, drop_mask [D, B, H].
void forward_loop(at::Tensor gates, at::Tensor states, const at::Tensor& weight_hh,
                  const std::optional<at::Tensor>& valid,
                  const std::optional<at::Tensor>& drop_mask, const std::string& nonlinearity,
                  bool recurrent_norm) {
  const int64_t time = gates.size(1);
  const int64_t hidden = states.size(-1);
  const auto weight_t = weight_hh.transpose(1, 2);
  auto z = at::empty_like(states.select(1, 0));
  auto c = at::empty_like(z);
  at::Tensor fresh = valid ? at::empty_like(z) : at::Tensor();
  at::Tensor u = recurrent_norm ? at::empty_like(gates.select(1, 0)) : at::Tensor();
  const std::vector<int64_t> norm_shape{2 * hidden};
  for (int64_t t = 0; t < time; ++t) {
    auto g = gates.select(1, t);
    const auto h_prev = states.select(1, t);
    auto h_next = states.select(1, t + 1);
    if (recurrent_norm) {
      at::bmm_out(u, h_prev, weight_t);
      g.add_(std::get<0>(at::native_layer_norm(u, norm_shape, {}, {}, kLayerNormEps)));
    } else {
      g.baddbmm_(h_prev, weight_t);
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

// The steps end - 1 down to start of cpu_kernel._backward_loop's inner loop, with the BLAS
// product: turns grad_gates' coefficients into the gates' gradient and carries dh back. For
// SLi-GRU u holds U h per step [D, T, B, 2H] (overwritten with its gradient) and mean, rstd
// its layer-norm statistics [T, D, B, 1]. Returns the new (dh, spare).
std::tuple<at::Tensor, at::Tensor> backward_steps(
    at::Tensor grad_gates, const at::Tensor& zeta, const at::Tensor& weight_hh,
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
    spare.baddbmm_(dg, weight_hh);
    std::swap(dh, spare);
  }
  return {dh, spare};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward_loop", &forward_loop, py::call_guard<py::gil_scoped_release>());
  m.def("backward_steps", &backward_steps, py::call_guard<py::gil_scoped_release>());
}
