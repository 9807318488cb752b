// Packed-weight GEMV for decode: int4 group-wise and int8 per-channel weights, stored as the integers
// RTN, GPTQ and AWQ produce (``w = (q - z) * s``, fp16 scale and uint8 zero per group), times activations
// rounded to int8 per block of 32 columns (book 6.2, 6.3.4). Python side: ch06_quantization/cpu_qgemv.py.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Half.h>
#include <cstdint>
#include <string>

constexpr int QG_BLOCK = 32;   // activation columns per int8 scale (and the smallest weight group)
constexpr int QG_CHUNK = 64;   // weight columns per chunk of the layout below

// One (N, K) weight. ``q``: N rows of K * bits / 8 bytes, in chunks of 64 columns; 8 bits: byte i of a chunk
// is column i; 4 bits: byte i holds column i in its low nibble and column i + 32 in its high nibble (so a
// chunk's low nibbles are one block of 32 columns and its high nibbles the next). ``s`` (fp16) and ``z``
// (uint8) hold one scale and one zero per group of G columns (G a multiple of 32; G = K is per channel),
// (N, K/G) each. ``perm`` (K int32, or null): kernel column k multiplies activation perm[k] (GPTQ act-order
// checkpoints, whose columns were sorted by group).
struct QWeight {
  const uint8_t* q = nullptr;
  const c10::Half* s = nullptr;
  const uint8_t* z = nullptr;
  const int32_t* perm = nullptr;
  int bits = 4;
  int64_t N = 0, K = 0, G = 0;
};

// y[m, n] (+)= sum over blocks b of s[n, g(b)] * sx[m, b] * (xq[m, b] . (q[n, b] - z[n, g(b)])) for M rows x
// (M, K): each block of 32 activations is rounded to int8 inside (sx = absmax / 127), and each block's dot
// product is an exact int32 before it is scaled. K must be a multiple of 64. Defined in qgemv.cpp.
void qgemv_rows(const float* x, int64_t M, const QWeight& w, float* y, bool accumulate);

// The QWeight over cpu_qgemv's tensors: q uint8 (N, K/64, 32) int4 or (N, K/64, 64) int8, s fp16 (N, K/G),
// z uint8 (N, K/G), perm int32 (K) or empty. Checks them; defined in qgemv.cpp, used by decode.cpp too.
QWeight qweight_of(const at::Tensor& q, const at::Tensor& s, const at::Tensor& z, const at::Tensor& perm);

// The path this build runs: "avx512_vnni", "avx2" or "scalar".
std::string qgemv_path();
