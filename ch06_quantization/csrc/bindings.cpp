// ch06's C++ kernels as one Python module (ch06_quantization/cpu_kernels.py builds it from this folder).
#include <torch/extension.h>

#include "ops.h"
#include "simd.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("simd_path", &llmic_simd_path, "the SIMD level this build was compiled for: avx512, avx2 or scalar");
  m.def("gemv_f32", &gemv_f32, "x (..., K) @ w.T for fp32 w (N, K), decode-shaped x");
  m.def("gemv_u8", &gemv_u8, "x @ dequant(q).T for per-channel uint8 q with scale and zero point");
  m.def("gemv_w8a8", &gemv_w8a8, "int8 weights x int8 activations (rounded per row), exact integer sums");
  m.def("pack_rows", &pack_rows, "(N, K) fp32 -> the one-stream-per-thread layout (N/4, K/8, 32)");
  m.def("gemv_f32_packed", &gemv_f32_packed, "x (M, K) @ w.T on pack_rows's layout");
  m.def("decode_forward", &decode_forward, "one fused decode step of a Llama model for up to T new tokens");
}
