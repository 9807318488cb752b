// Packed-weight GEMV/GEMM for decode: int4 group-wise and int8 per-channel weights, stored as the integers
// RTN, GPTQ and AWQ produce (``w = (q - z) * s``, fp16 scale and uint8 zero per group), times activations
// rounded to int8 per block of 32 columns (book 6.2, 6.3.4). Python side: ch06_quantization/cpu_qgemv.py.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Half.h>
#include <cstdint>
#include <string>

constexpr int QG_BLOCK = 32;   // activation columns per int8 scale (and the smallest weight group)
constexpr int QG_TILE = 16;    // weight rows per tile: one int32 lane each in a 512-bit register

// One (N, K) weight in tiles of 16 rows (N a multiple of 16, K of 32). ``q``, tile by tile, block of 32
// columns by block, in steps of 64 bytes = 16 rows x 4 bytes (byte 4r + j of a step belongs to row r):
//   8 bits: 8 steps a block; step i holds columns 4i .. 4i + 3 of the block;
//   4 bits: 4 steps a block; step i holds columns 8i + j in its low nibbles and 8i + 4 + j in its high ones.
// So one 64-byte load (two, unpacked, for int4) feeds one vpdpbusd that adds four products to each of 16
// rows, and every activation value is a broadcast. ``s`` (fp16) and ``z`` (uint8): one scale and one zero
// per row and group of G columns (G a multiple of 32; G = K is per channel), tiled alike: (N/16, K/G, 16).
// The zeros' type picks the activations: uint8 ``z`` -> int8 activations per block (the default, fastest);
// int16 ``zw`` -> int16 activations per block, the zero subtracted from the weights in int16 (about 256x less
// rounding of the activations, at about half the integer throughput).
// ``perm`` (K int32, or null): kernel column k multiplies activation perm[k] (GPTQ act-order checkpoints,
// whose columns were sorted by group).
struct QWeight {
  const uint8_t* q = nullptr;
  const c10::Half* s = nullptr;
  const uint8_t* z = nullptr;
  const int16_t* zw = nullptr;
  const int32_t* perm = nullptr;
  int bits = 4, act_bits = 8;
  int64_t N = 0, K = 0, G = 0;
};

// y[m, n] (+)= sum over blocks b of s[n, g(b)] * sx[m, b] * (xq[m, b] . (q[n, b] - z[n, g(b)])) for M rows x
// (M, K): each block of 32 activations is rounded to int8 (sx = absmax / 127) or int16 (absmax / 32767) inside,
// and each block's dot product is an exact int32 before it is scaled. Defined in qgemv.cpp.
void qgemv_rows(const float* x, int64_t M, const QWeight& w, float* y, bool accumulate);

// The QWeight over cpu_qgemv's tensors: q uint8 (N/16, K/32, 4, 64) int4 or (N/16, K/32, 8, 64) int8, s fp16
// and z uint8 or int16 (N/16, K/G, 16), perm int32 (K) or empty. Checks them; defined in qgemv.cpp, used by decode.cpp.
QWeight qweight_of(const at::Tensor& q, const at::Tensor& s, const at::Tensor& z, const at::Tensor& perm);

// The path this build runs: "avx512_vnni", "avx2" or "scalar".
std::string qgemv_path();
