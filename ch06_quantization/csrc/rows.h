// Helpers every operator of ch06's extension uses: the (+)= store and the tensor-to-pointer wrapper.
#pragma once

// ATen's tensor and the two factories the kernels use, not <torch/extension.h>: that header (pybind11 and all of
// libtorch's C++ API) costs ~18 s of g++ per file here, this ~2 s. Only bindings.cpp needs the full one.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

// y = v, or y += v when the kernel folds a residual add into its output (the fused decoder, decode.cpp)
static inline void put(float* y, float v, bool accumulate) { *y = accumulate ? *y + v : v; }

// x (..., K) -> (..., N): ``rows(xp, M, K, out)`` fills out (M, N) from a contiguous (M, K) copy of x.
// Every operator of ch06's extension wraps its pointer-level kernel with this.
template <typename Rows>
static at::Tensor over_rows(at::Tensor x, int64_t N, Rows rows) {
  const int64_t K = x.size(-1);
  auto x2 = x.reshape({-1, K}).contiguous();
  auto out = at::empty({x2.size(0), N}, x2.options());
  rows(x2.data_ptr<float>(), x2.size(0), K, out.data_ptr<float>());
  auto shape = x.sizes().vec();
  shape.back() = N;
  return out.view(shape);
}
