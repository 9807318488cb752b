// The decode GEMV over row-major weights, fp32 or uint8 widened in registers (book 6.1, 6.2).
// Header-only because it is a template: gemv.cpp wraps it as operators, decode.cpp calls it inside the fused
// decode step. Python side: ch06_quantization/cpu_gemv.py; tests: tests/ch06/test_cpu_gemv.py.
#pragma once

#include <ATen/Parallel.h>
#include <algorithm>
#include <vector>

#include "rows.h"
#include "simd.h"

// d[r][j] = x_j . w_r over K for two weight rows r and NM (<= 8) activation rows j: each weight vector is
// loaded (and, for uint8, widened) once and used NM times. An FMA's result is ready ~4-5 cycles after it
// starts, so a single accumulator chain per dot product would idle the FMA units; with one or two
// activation rows (decode) each dot product gets U = 2 chains, so at least 4 are in flight.
template <int NM, typename W>
static inline void dot2(const float* x, int64_t K, const W* w0, const W* w1, float d[2][8]) {
  int64_t k = 0;
  float s[2][NM] = {};
#ifdef __AVX2__
  constexpr int U = NM <= 2 ? 2 : 1;
  __m256 a[2][NM][U];
  for (int j = 0; j < NM; ++j)
    for (int u = 0; u < U; ++u) { a[0][j][u] = _mm256_setzero_ps(); a[1][j][u] = _mm256_setzero_ps(); }
  for (; k + 8 * U <= K; k += 8 * U) {
    _mm_prefetch(reinterpret_cast<const char*>(w0 + k) + PREFETCH_BYTES, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w1 + k) + PREFETCH_BYTES, _MM_HINT_T0);
    for (int u = 0; u < U; ++u) {
      const __m256 v0 = load8(w0 + k + 8 * u), v1 = load8(w1 + k + 8 * u);
      for (int j = 0; j < NM; ++j) {
        const __m256 xv = _mm256_loadu_ps(x + j * K + k + 8 * u);
        a[0][j][u] = _mm256_fmadd_ps(xv, v0, a[0][j][u]);
        a[1][j][u] = _mm256_fmadd_ps(xv, v1, a[1][j][u]);
      }
    }
  }
  for (; k + 8 <= K; k += 8) {
    const __m256 v0 = load8(w0 + k), v1 = load8(w1 + k);
    for (int j = 0; j < NM; ++j) {
      const __m256 xv = _mm256_loadu_ps(x + j * K + k);
      a[0][j][0] = _mm256_fmadd_ps(xv, v0, a[0][j][0]);
      a[1][j][0] = _mm256_fmadd_ps(xv, v1, a[1][j][0]);
    }
  }
  for (int j = 0; j < NM; ++j)
    for (int r = 0; r < 2; ++r) {
      __m256 t = a[r][j][0];
      for (int u = 1; u < U; ++u) t = _mm256_add_ps(t, a[r][j][u]);
      s[r][j] = hsum(t);
    }
#endif
  for (; k < K; ++k)
    for (int j = 0; j < NM; ++j) { s[0][j] += x[j * K + k] * float(w0[k]); s[1][j] += x[j * K + k] * float(w1[k]); }
  for (int j = 0; j < NM; ++j) { d[0][j] = s[0][j]; d[1][j] = s[1][j]; }
}

template <typename W>
static inline void dot2_any(const float* x, int64_t K, int nm, const W* w0, const W* w1, float d[2][8]) {
  switch (nm) {
    case 1: dot2<1>(x, K, w0, w1, d); break;
    case 2: dot2<2>(x, K, w0, w1, d); break;
    case 3: dot2<3>(x, K, w0, w1, d); break;
    case 4: dot2<4>(x, K, w0, w1, d); break;
    case 5: dot2<5>(x, K, w0, w1, d); break;
    case 6: dot2<6>(x, K, w0, w1, d); break;
    case 7: dot2<7>(x, K, w0, w1, d); break;
    default: dot2<8>(x, K, w0, w1, d); break;
  }
}

// y[m, n] (+)= scale[n] * (x[m] . w[n] - zero[n] * sum(x[m])) for M rows x (M, K) and N weight rows;
// scale/zero null for fp32 weights. Shared with the fused decoder (decode.cpp), which accumulates
// straight into the residual stream.
template <typename W>
static void gemv_rows(const float* xp, int64_t M, int64_t K, const W* w, int64_t N, const float* scale,
                      const float* zero, float* op, bool accumulate) {
  std::vector<float> xsum(M, 0.f);
  if (zero) for (int64_t m = 0; m < M; ++m) for (int64_t k = 0; k < K; ++k) xsum[m] += xp[m * K + k];
  at::parallel_for(0, (N + 1) / 2, 32, [&](int64_t begin, int64_t end) {   // pairs of weight rows
    float d[2][8];
    for (int64_t p = begin; p < end; ++p) {
      const int64_t n = 2 * p;
      const bool two = n + 1 < N;
      const W* w0 = w + n * K;
      const W* w1 = two ? w0 + K : w0;
      for (int64_t m0 = 0; m0 < M; m0 += 8) {     // activation rows in blocks of 8 (they stay in L1)
        const int nm = int(std::min<int64_t>(8, M - m0));
        dot2_any(xp + m0 * K, K, nm, w0, w1, d);
        for (int j = 0; j < nm; ++j) {
          const int64_t m = m0 + j;
          float d0 = d[0][j], d1 = d[1][j];
          if (scale) {
            d0 = scale[n] * (d0 - zero[n] * xsum[m]);
            if (two) d1 = scale[n + 1] * (d1 - zero[n + 1] * xsum[m]);
          }
          put(op + m * N + n, d0, accumulate);
          if (two) put(op + m * N + n + 1, d1, accumulate);
        }
      }
    }
  });
}
