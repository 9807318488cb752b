// The whole decode step in one C++ call: fused layers on the CPU, fp32, int8 or int4 weights (book 6.2; 7.4.2; 9.3).
// Python side: ch06_quantization/cpu_decode.py (FusedDecoder); tests: tests/ch06/test_cpu_decode.py.
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "gemv.h"
#include "ops.h"
#include "packed.h"
#include "qgemv.h"
#include "simd.h"
#include "w8a8.h"

// One weight matrix (N, K), four tensors [w, s, z, perm]: fp32 ``f`` (row-major, or in cpu_packed's layout); or
// uint8 ``q`` with per-row fp32 scale ``s`` and zero ``z`` (cpu_gemv's weight-only int8); or int8 ``i8`` with
// per-row scale ``s`` (cpu_w8a8: activations rounded to int8 too); or cpu_qgemv's packed int4/int8 groups ``pq``.
struct QMat {
  const float* f = nullptr; const uint8_t* q = nullptr; const int8_t* i8 = nullptr;
  const float* s = nullptr; const float* z = nullptr;
  QWeight pq;
  int64_t N = 0, K = 0;
  bool packed = false;
};

static QMat qmat(const std::vector<at::Tensor>& t, size_t i) {   // t[i .. i + 3] = w, scale, zero, perm
  QMat m;
  if (t[i].dim() == 4 && t[i].scalar_type() == at::kByte) {   // cpu_qgemv's tiles (N/16, K/32, 4 or 8, 64)
    m.pq = qweight_of(t[i], t[i + 1], t[i + 2], t[i + 3]); m.N = m.pq.N; m.K = m.pq.K;
    return m;
  }
  if (t[i].dim() == 3) {   // cpu_packed's (N/PACK, K/8, PACK*8)
    m.packed = true; m.N = t[i].size(0) * PACK; m.K = t[i].size(1) * 8; m.f = t[i].data_ptr<float>();
    return m;
  }
  m.N = t[i].size(0); m.K = t[i].size(1);
  switch (t[i].scalar_type()) {
    case at::kFloat: m.f = t[i].data_ptr<float>(); break;
    case at::kByte: m.q = t[i].data_ptr<uint8_t>(); m.s = t[i + 1].data_ptr<float>(); m.z = t[i + 2].data_ptr<float>(); break;
    case at::kChar: m.i8 = t[i].data_ptr<int8_t>(); m.s = t[i + 1].data_ptr<float>(); break;
    default: TORCH_CHECK(false, "weights must be fp32, uint8 or int8");
  }
  return m;
}

static void matvec(const QMat& w, const float* x, int64_t M, float* y, bool accumulate) {
  if (w.pq.q) qgemv_rows(x, M, w.pq, y, accumulate);
  else if (w.packed) gemv_packed(x, M, w.K, w.f, w.N, y, accumulate);
  else if (w.f) gemv_rows<float>(x, M, w.K, w.f, w.N, nullptr, nullptr, y, accumulate);
  else if (w.q) gemv_rows<uint8_t>(x, M, w.K, w.q, w.N, w.s, w.z, y, accumulate);
  else w8a8_rows(x, M, w.K, w.i8, w.N, w.s, y, accumulate);
}

static inline float dot(const float* a, const float* b, int64_t n) {
  int64_t k = 0;
  float s = 0.f;
#ifdef __AVX2__
  __m256 acc = _mm256_setzero_ps();
  for (; k + 8 <= n; k += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), acc);
  s = hsum(acc);
#endif
  for (; k < n; ++k) s += a[k] * b[k];
  return s;
}

static inline void axpy(float a, const float* x, float* y, int64_t n) {   // y += a * x
  int64_t k = 0;
#ifdef __AVX2__
  const __m256 av = _mm256_set1_ps(a);
  for (; k + 8 <= n; k += 8) _mm256_storeu_ps(y + k, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + k), _mm256_loadu_ps(y + k)));
#endif
  for (; k < n; ++k) y[k] += a * x[k];
}

// out = w * (x * rsqrt(mean(x^2) + eps)) row by row, as ch04's RMSNorm computes it in fp32
static void rmsnorm(const float* x, const float* w, int64_t M, int64_t H, float eps, float* out) {
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * H;
    const float r = 1.f / std::sqrt(dot(xr, xr, H) / float(H) + eps);
    for (int64_t k = 0; k < H; ++k) out[m * H + k] = w[k] * (xr[k] * r);
  }
}

// rotate pairs (i, i + D/2) of each of ``heads`` vectors by the position's angles (HF's "rotate half")
static void rope(float* v, int64_t heads, int64_t D, const float* cs, const float* sn) {
  const int64_t half = D / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* x = v + h * D;
    for (int64_t i = 0; i < half; ++i) {
      const float a = x[i], b = x[i + half];
      x[i] = a * cs[i] - b * sn[i];
      x[i + half] = b * cs[i] + a * sn[i];
    }
  }
}

// causal attention of T new queries (row stride ldq) over one layer's cache (Hkv, S, D), positions start..
static void attend(const float* q, int64_t ldq, const float* kc, const float* vc, int64_t S, int64_t T,
                   int64_t H, int64_t Hkv, int64_t D, int64_t start, float* out) {
  const float scale = 1.f / std::sqrt(float(D));
  const int64_t group = H / Hkv;
  at::parallel_for(0, T * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> p(start + T);
    std::vector<float> acc(D);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t t = i / H, h = i % H, n = start + t + 1;   // query t sees positions 0..start+t
      const float* qv = q + t * ldq + h * D;
      const float* K = kc + (h / group) * S * D;
      const float* V = vc + (h / group) * S * D;
      float mx = -std::numeric_limits<float>::infinity(), sum = 0.f;
      for (int64_t j = 0; j < n; ++j) { p[j] = dot(qv, K + j * D, D) * scale; mx = std::max(mx, p[j]); }
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t j = 0; j < n; ++j) {
        const float e = std::exp(p[j] - mx);
        sum += e;
        axpy(e, V + j * D, acc.data(), D);
      }
      float* o = out + t * H * D + h * D;
      for (int64_t d = 0; d < D; ++d) o[d] = acc[d] / sum;
    }
  });
}

// One decode (or verify) step for T new tokens at positions start..start+T-1 of one sequence.
// w: 18 tensors per layer [ln1, qkv x4, o x4, ln2, gate|up x4, down x4] then [norm, head x4], each matrix as
// [w, s, z, perm] (what it does not use empty). k_cache, v_cache: ContiguousKVCache's (L, 1, Hkv, S, D), written in place.
// Returns the logits (keep, V) of the last ``keep`` tokens.
at::Tensor decode_forward(at::Tensor ids, int64_t start, int64_t keep, std::vector<at::Tensor> w,
                             at::Tensor embed, at::Tensor inv_freq, at::Tensor k_cache,
                             at::Tensor v_cache, int64_t num_heads, double eps_d) {
  TORCH_CHECK(ids.dim() == 1 && ids.scalar_type() == at::kLong, "ids must be a 1-D int64 tensor");
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous() && k_cache.scalar_type() == at::kFloat &&
              k_cache.dim() == 5 && k_cache.size(1) == 1, "caches must be contiguous fp32 (L, 1, Hkv, S, D)");
  const int64_t T = ids.size(0), L = (int64_t(w.size()) - 5) / 18, Hkv = k_cache.size(2), S = k_cache.size(3),
                D = k_cache.size(4), H = embed.size(1), Nq = num_heads * D, Nkv = Hkv * D;
  TORCH_CHECK(int64_t(w.size()) == 18 * L + 5 && L >= 1, "expected 18 weight tensors per layer and 5 more, got ",
              w.size());
  TORCH_CHECK(k_cache.size(0) >= L, "the cache has ", k_cache.size(0), " layers, the model ", L);
  TORCH_CHECK(T >= 1 && start + T <= S, "positions ", start, "..", start + T - 1, " do not fit a cache of ", S);
  TORCH_CHECK(keep >= 1 && keep <= T, "keep must be in 1..T");
  const float eps = float(eps_d);
  const int64_t* idp = ids.data_ptr<int64_t>();
  const float* E = embed.data_ptr<float>();
  const int64_t I2 = qmat(w, 10).N, I = I2 / 2;
  std::vector<float> x(T * H), h(T * H), qkv(T * (Nq + 2 * Nkv)), att(T * Nq), gu(T * I2), act(T * I);
  std::vector<float> cs(T * D / 2), sn(T * D / 2);
  const float* inv = inv_freq.data_ptr<float>();
  for (int64_t t = 0; t < T; ++t) {
    TORCH_CHECK(idp[t] >= 0 && idp[t] < embed.size(0), "token id ", idp[t], " is outside the vocabulary");
    std::copy(E + idp[t] * H, E + (idp[t] + 1) * H, x.begin() + t * H);
    for (int64_t i = 0; i < D / 2; ++i) {       // angles in fp32 as ch04's Rotary computes them
      const float f = float(start + t) * inv[i];
      cs[t * D / 2 + i] = std::cos(f);
      sn[t * D / 2 + i] = std::sin(f);
    }
  }
  const int64_t ldq = Nq + 2 * Nkv;
  for (int64_t l = 0; l < L; ++l) {
    const size_t b = 18 * l;
    float* kc = k_cache.data_ptr<float>() + l * Hkv * S * D;
    float* vc = v_cache.data_ptr<float>() + l * Hkv * S * D;
    rmsnorm(x.data(), w[b].data_ptr<float>(), T, H, eps, h.data());
    matvec(qmat(w, b + 1), h.data(), T, qkv.data(), false);
    for (int64_t t = 0; t < T; ++t) {
      float* row = qkv.data() + t * ldq;
      rope(row, num_heads, D, cs.data() + t * D / 2, sn.data() + t * D / 2);
      rope(row + Nq, Hkv, D, cs.data() + t * D / 2, sn.data() + t * D / 2);
      for (int64_t g = 0; g < Hkv; ++g) {       // append K and V at position start + t
        std::copy(row + Nq + g * D, row + Nq + (g + 1) * D, kc + (g * S + start + t) * D);
        std::copy(row + Nq + Nkv + g * D, row + Nq + Nkv + (g + 1) * D, vc + (g * S + start + t) * D);
      }
    }
    attend(qkv.data(), ldq, kc, vc, S, T, num_heads, Hkv, D, start, att.data());
    matvec(qmat(w, b + 5), att.data(), T, x.data(), true);          // x += W_o a
    rmsnorm(x.data(), w[b + 9].data_ptr<float>(), T, H, eps, h.data());
    matvec(qmat(w, b + 10), h.data(), T, gu.data(), false);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < I; ++i) {
        const float g = gu[t * I2 + i];
        act[t * I + i] = g / (1.f + std::exp(-g)) * gu[t * I2 + I + i];
      }
    matvec(qmat(w, b + 14), act.data(), T, x.data(), true);         // x += W_down silu(g) * u
  }
  const size_t f = 18 * L;
  rmsnorm(x.data() + (T - keep) * H, w[f].data_ptr<float>(), keep, H, eps, h.data());
  const QMat head = qmat(w, f + 1);
  auto logits = at::empty({keep, head.N}, embed.options());
  matvec(head, h.data(), keep, logits.data_ptr<float>(), false);
  return logits;
}
