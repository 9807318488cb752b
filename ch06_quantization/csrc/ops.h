// The operators of ch06's extension, as bindings.cpp exposes them to Python (ch06_quantization/cpu_kernels.py).
#pragma once

#include <ATen/core/Tensor.h>
#include <vector>

at::Tensor gemv_f32(at::Tensor x, at::Tensor w);                                          // gemv.cpp
at::Tensor gemv_u8(at::Tensor x, at::Tensor q, at::Tensor scale, at::Tensor zero);  // gemv.cpp
at::Tensor gemv_w8a8(at::Tensor x, at::Tensor wq, at::Tensor sw);                      // w8a8.cpp
at::Tensor pack_rows(at::Tensor w);                                                          // packed.cpp
at::Tensor gemv_f32_packed(at::Tensor x, at::Tensor p);                                   // packed.cpp
at::Tensor decode_forward(at::Tensor ids, int64_t start, int64_t keep, std::vector<at::Tensor> w,
                             at::Tensor embed, at::Tensor inv_freq, at::Tensor k_cache,
                             at::Tensor v_cache, int64_t num_heads, double eps_d);              // decode.cpp
