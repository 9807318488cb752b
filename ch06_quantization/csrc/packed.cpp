// fp32 weights re-laid out so that each thread reads ONE sequential stream: blocks of 4 rows, and inside a
// block, for each group of 8 columns, the 4 rows' 8 values (128 B) one after the other. Shape (N/4, K/8, 32).
// Measured on the model's linears here, one activation row: 24-25 ms (~22 GB/s) against 35-36 ms for
// row-major rows read in pairs (gemv_rows). Python side: ch06_quantization/cpu_packed.py; tests:
// tests/ch06/test_cpu_packed.py.
#include <ATen/Parallel.h>
#include <algorithm>

#include "ops.h"
#include "packed.h"
#include "rows.h"
#include "simd.h"

at::Tensor pack_rows(at::Tensor w) {
  TORCH_CHECK(w.dim() == 2 && w.scalar_type() == at::kFloat && w.is_contiguous(), "pack_rows wants a contiguous fp32 matrix");
  const int64_t N = w.size(0), K = w.size(1);
  TORCH_CHECK(N % PACK == 0 && K % 8 == 0, "pack_rows wants rows divisible by ", PACK, " and columns by 8, got ",
              N, " x ", K);
  auto p = at::empty({N / PACK, K / 8, PACK * 8}, w.options());
  const float* src = w.data_ptr<float>();
  float* dst = p.data_ptr<float>();
  at::parallel_for(0, N / PACK, 16, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b)
      for (int64_t kc = 0; kc < K / 8; ++kc)
        for (int r = 0; r < PACK; ++r)
          for (int j = 0; j < 8; ++j)
            dst[((b * (K / 8) + kc) * PACK + r) * 8 + j] = src[(b * PACK + r) * K + kc * 8 + j];
  });
  return p;
}

// v[j][r] = x_j . w_r for the PACK rows of one packed block and J activation rows: PACK x J accumulators,
// each weight vector loaded once and used J times.
template <int J>
static inline void packed_dot(const float* blk, const float* x, int64_t K, float v[][PACK]) {
#ifdef __AVX2__
  __m256 a[J][PACK];
  for (int j = 0; j < J; ++j)
    for (int r = 0; r < PACK; ++r) a[j][r] = _mm256_setzero_ps();
  for (int64_t kc = 0; kc < K / 8; ++kc) {
    const float* c = blk + kc * PACK * 8;
    __m256 xv[J];
    for (int j = 0; j < J; ++j) xv[j] = _mm256_loadu_ps(x + j * K + kc * 8);
    for (int r = 0; r < PACK; ++r) {
      const __m256 wv = _mm256_loadu_ps(c + r * 8);
      for (int j = 0; j < J; ++j) a[j][r] = _mm256_fmadd_ps(xv[j], wv, a[j][r]);
    }
  }
  for (int j = 0; j < J; ++j)
    for (int r = 0; r < PACK; ++r) v[j][r] = hsum(a[j][r]);
#else
  for (int j = 0; j < J; ++j)
    for (int r = 0; r < PACK; ++r) {
      float s = 0.f;
      for (int64_t kc = 0; kc < K / 8; ++kc)
        for (int e = 0; e < 8; ++e) s += x[j * K + kc * 8 + e] * blk[kc * PACK * 8 + r * 8 + e];
      v[j][r] = s;
    }
#endif
}

// y[m, block*PACK + r] (+)= x[m] . w[block*PACK + r] on the packed layout. Activation rows go three at a
// time (12 accumulators, each weight load feeding 3 FMAs); a block (9-24 KB) is read from memory once
// and re-read from L1 for further rows (a verification pass).
void gemv_packed(const float* xp, int64_t M, int64_t K, const float* p, int64_t N, float* op, bool accumulate) {
  at::parallel_for(0, N / PACK, 8, [&](int64_t begin, int64_t end) {
    float v[3][PACK];
    for (int64_t b = begin; b < end; ++b) {
      const float* blk = p + b * PACK * K;
      for (int64_t m = 0; m < M;) {
        const int64_t J = std::min<int64_t>(3, M - m);
        const float* x = xp + m * K;
        if (J == 1) packed_dot<1>(blk, x, K, v);
        else if (J == 2) packed_dot<2>(blk, x, K, v);
        else packed_dot<3>(blk, x, K, v);
        for (int64_t j = 0; j < J; ++j) {
          float* y = op + (m + j) * N + b * PACK;
          for (int r = 0; r < PACK; ++r) put(y + r, v[j][r], accumulate);
        }
        m += J;
      }
    }
  });
}

at::Tensor gemv_f32_packed(at::Tensor x, at::Tensor p) {   // x (M, K) -> (M, N) on pack_rows's layout
  TORCH_CHECK(p.dim() == 3 && p.size(2) == PACK * 8 && x.scalar_type() == at::kFloat && x.dim() == 2 &&
              x.size(1) == p.size(1) * 8, "gemv_f32_packed wants x (M, K) fp32 and a pack_rows weight");
  const int64_t N = p.size(0) * PACK;
  return over_rows(x, N, [&](const float* xp, int64_t M, int64_t K, float* op) {
    gemv_packed(xp, M, K, p.data_ptr<float>(), N, op, false);
  });
}

