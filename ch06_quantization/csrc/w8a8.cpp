// W8A8 decode GEMV: each activation row rounded to int8 once, then u8 x s8 byte dot products 32 at a time
// (maddubs + madd, the instruction pair llama.cpp uses for its Q8 formats). Python side:
// ch06_quantization/cpu_w8a8.py; tests: tests/ch06/test_cpu_w8a8.py (exact against an integer reference).
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops.h"
#include "rows.h"
#include "simd.h"
#include "w8a8.h"

// d0 = xq . w0, d1 = xq . w1 over K int8 values, exact int32 sums
static inline void idot2(const int8_t* x, const int8_t* w0, const int8_t* w1, int64_t K, int32_t& d0, int32_t& d1) {
  int64_t k = 0;
  int32_t s0 = 0, s1 = 0;
#ifdef __AVX2__
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
  for (; k + 32 <= K; k += 32) {
    _mm_prefetch(reinterpret_cast<const char*>(w0 + k) + PREFETCH_BYTES, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w1 + k) + PREFETCH_BYTES, _MM_HINT_T0);
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + k));
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + k));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w1 + k));
    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(v0, v0), _mm256_sign_epi8(xv, v0)), ones));
    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(v1, v1), _mm256_sign_epi8(xv, v1)), ones));
  }
  s0 = hsum_i32(a0); s1 = hsum_i32(a1);
#endif
  for (; k < K; ++k) { s0 += int32_t(x[k]) * w0[k]; s1 += int32_t(x[k]) * w1[k]; }
  d0 = s0; d1 = s1;
}

// w8a8.h says what it computes; the fused decoder (decode.cpp) calls it too.
void w8a8_rows(const float* xp, int64_t M, int64_t K, const int8_t* w, int64_t N, const float* s,
                      float* op, bool accumulate) {
  std::vector<int8_t> xq(M * K);                   // activations rounded to int8, one scale per row
  std::vector<float> sx(M);
  for (int64_t m = 0; m < M; ++m) {
    float amax = 0.f;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(xp[m * K + k]));
    sx[m] = amax > 0.f ? amax / 127.f : 1.f;
    const float inv = 1.f / sx[m];
    for (int64_t k = 0; k < K; ++k) xq[m * K + k] = int8_t(std::nearbyint(xp[m * K + k] * inv));
  }
  at::parallel_for(0, (N + 1) / 2, 32, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = 2 * p;
      const bool two = n + 1 < N;
      const int8_t* w0 = w + n * K;
      const int8_t* w1 = two ? w0 + K : w0;
      for (int64_t m = 0; m < M; ++m) {             // the two weight rows stay in L1 across the M rows
        int32_t d0, d1;
        idot2(xq.data() + m * K, w0, w1, K, d0, d1);
        const float y0 = sx[m] * s[n] * float(d0), y1 = two ? sx[m] * s[n + 1] * float(d1) : 0.f;
        put(op + m * N + n, y0, accumulate);
        if (two) put(op + m * N + n + 1, y1, accumulate);
      }
    }
  });
}

at::Tensor gemv_w8a8(at::Tensor x, at::Tensor wq, at::Tensor sw) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && wq.scalar_type() == at::kChar && wq.is_contiguous(),
              "gemv_w8a8 wants fp32 x and a contiguous int8 weight");
  const int64_t K = x.size(-1), N = wq.size(0);
  TORCH_CHECK(wq.size(1) == K, "x has ", K, " features, the weight ", wq.size(1));
  auto swf = sw.to(at::kFloat).contiguous();
  return over_rows(x, N, [&](const float* xp, int64_t M, int64_t K, float* op) {
    w8a8_rows(xp, M, K, wq.data_ptr<int8_t>(), N, swf.data_ptr<float>(), op, false);
  });
}
