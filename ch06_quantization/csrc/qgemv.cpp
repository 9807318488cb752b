// Packed-weight GEMV for decode (qgemv.h says what it computes). A batch-1 decode step reads every weight
// once, so bytes per weight set its speed: int4 g64 reads 0.5 B + 3 B per 64 columns (0.55 B), int8 per
// channel 1 B, fp32 4 B. The weights are never widened to fp32: each block of 32 activations is rounded to
// int8 once per call and the dot products are integer, the way llama.cpp pairs its Q4_0/Q8_0 weights with
// Q8_0 activations (our layout and zero points are our own):
//
//   AVX-512 VNNI  64 columns a step: 32 bytes of nibbles (low | high) or 64 bytes of int8 fill one zmm of
//                 u8 and one vpdpbusd (u8 x s8, four products summed into each int32 lane) does the block
//                 pair; the zero point comes off as z * (sum of the four activations), precomputed per row;
//   AVX2          the same chunk as two blocks of 32: maddubs (u8 x s8 -> int16 pairs) + madd -> int32; int8
//                 weights are shifted to s8 first (q - 128: maddubs of 255 x 127 would saturate int16);
//   scalar        one product at a time.
// Each block's int32 sum is exact in all three; only its fp32 scaling and the sum over blocks round, so the
// paths agree to float rounding (tests/ch06/test_cpu_qgemv.py, each path built through LLMIC_SIMD).
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops.h"
#include "qgemv.h"
#include "rows.h"
#include "simd.h"

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define QG_VNNI 1
#endif

std::string qgemv_path() {
#if defined(QG_VNNI)
  return "avx512_vnni";
#elif defined(__AVX2__)
  return "avx2";
#else
  return "scalar";
#endif
}

namespace {

// One activation row, rounded once for every weight row: int8 values (in kernel column order), one scale per
// block of 32 (sxv: the same, 8 lanes per block, for the AVX-512 path) and the sum of each 4 int8 values.
struct QAct {
  std::vector<int8_t> xq;
  std::vector<float> sx, sxv;
  std::vector<int32_t> sum4;
};

void quantize_act(const float* x, const int32_t* perm, int64_t K, QAct& a) {
  const int64_t B = K / QG_BLOCK;
  a.xq.resize(K); a.sx.resize(B); a.sxv.resize(B * 8); a.sum4.resize(K / 4);
  float v[QG_BLOCK];
  for (int64_t b = 0; b < B; ++b) {
    float amax = 0.f;
    for (int i = 0; i < QG_BLOCK; ++i) {
      const int64_t k = b * QG_BLOCK + i;
      v[i] = perm ? x[perm[k]] : x[k];
      amax = std::max(amax, std::fabs(v[i]));
    }
    const float s = amax > 0.f ? amax / 127.f : 1.f, inv = 1.f / s;
    a.sx[b] = s;
    for (int i = 0; i < 8; ++i) a.sxv[b * 8 + i] = s;
    for (int i = 0; i < QG_BLOCK; ++i) a.xq[b * QG_BLOCK + i] = int8_t(std::nearbyint(v[i] * inv));
  }
  for (int64_t j = 0; j < K / 4; ++j)
    a.sum4[j] = int32_t(a.xq[4 * j]) + a.xq[4 * j + 1] + a.xq[4 * j + 2] + a.xq[4 * j + 3];
}

// The weight row's scales as fp32 and zeros as int32 (minus ``zoff``), once per row for all activation rows
struct RowParams {
  std::vector<float> s;
  std::vector<int32_t> z;
};

void row_params(const QWeight& w, int64_t n, int32_t zoff, RowParams& p) {
  const int64_t GN = w.K / w.G;
  p.s.resize(GN); p.z.resize(GN);
  halves_to_floats(w.s + n * GN, GN, p.s.data());
  for (int64_t g = 0; g < GN; ++g) p.z[g] = int32_t(w.z[n * GN + g]) - zoff;
}

#if defined(QG_VNNI)
// NM activation rows against one weight row: each chunk is loaded and unpacked once and used NM times.
template <int BITS, int NM>
inline void dot_vnni(const uint8_t* w, const RowParams& p, int64_t K, int64_t G, const QAct* const* a, float* out) {
  const int64_t C = K / QG_CHUNK;
  constexpr int CB = QG_CHUNK * BITS / 8;   // bytes per chunk
  const __m256i low = _mm256_set1_epi8(0x0F);
  __m512 acc[NM][2];
  for (int j = 0; j < NM; ++j) acc[j][0] = acc[j][1] = _mm512_setzero_ps();
  for (int64_t c = 0; c < C; ++c) {
    _mm_prefetch(reinterpret_cast<const char*>(w + CB * c) + PREFETCH_BYTES, _MM_HINT_T0);
    __m512i wv;
    if constexpr (BITS == 4) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + CB * c));
      wv = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(b, low)),
                              _mm256_and_si256(_mm256_srli_epi16(b, 4), low), 1);
    } else {
      wv = _mm512_loadu_si512(w + CB * c);
    }
    const int64_t g0 = 2 * c * QG_BLOCK / G, g1 = (2 * c + 1) * QG_BLOCK / G;
    const __m512i zv = _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(p.z[g0]), _mm512_set1_epi32(p.z[g1]));
    const __m512 sw = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(p.s[g0]), _mm512_set1_ps(p.s[g1]));
    for (int j = 0; j < NM; ++j) {
      const __m512i x = _mm512_loadu_si512(a[j]->xq.data() + QG_CHUNK * c);
      const __m512i zs = _mm512_mullo_epi32(zv, _mm512_loadu_si512(a[j]->sum4.data() + 16 * c));
      const __m512i d = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, x), zs);
      const __m512 sc = _mm512_mul_ps(sw, _mm512_loadu_ps(a[j]->sxv.data() + 16 * c));
      acc[j][c & 1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), sc, acc[j][c & 1]);
    }
  }
  for (int j = 0; j < NM; ++j) out[j] = _mm512_reduce_add_ps(_mm512_add_ps(acc[j][0], acc[j][1]));
}
#endif

// One activation row against one weight row (the AVX2 and scalar paths).
template <int BITS>
inline float dot_one(const uint8_t* w, const RowParams& p, int64_t K, int64_t G, const QAct& a) {
  const int64_t C = K / QG_CHUNK;
  constexpr int CB = QG_CHUNK * BITS / 8;
#if defined(__AVX2__)
  const __m256i low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8(char(0x80));
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (int64_t c = 0; c < C; ++c) {
    _mm_prefetch(reinterpret_cast<const char*>(w + CB * c) + PREFETCH_BYTES, _MM_HINT_T0);
    const int8_t* x = a.xq.data() + QG_CHUNK * c;
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
    const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32));
    __m256i d0, d1;
    if constexpr (BITS == 4) {   // nibbles 0..15: maddubs cannot saturate (2 * 15 * 127 < 32767)
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + CB * c));
      d0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_and_si256(b, low), x0), ones);
      d1 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(b, 4), low), x1), ones);
    } else {                     // q - 128 as s8; |q - 128| <= 128 times |x| <= 127, pairs fit int16
      const __m256i w0 = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + CB * c)), flip);
      const __m256i w1 = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + CB * c + 32)), flip);
      d0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(x0, w0)), ones);
      d1 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w1, w1), _mm256_sign_epi8(x1, w1)), ones);
    }
    const int64_t g0 = 2 * c * QG_BLOCK / G, g1 = (2 * c + 1) * QG_BLOCK / G;
    const int32_t* s4 = a.sum4.data() + 16 * c;
    d0 = _mm256_sub_epi32(d0, _mm256_mullo_epi32(_mm256_set1_epi32(p.z[g0]),
                                                 _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s4))));
    d1 = _mm256_sub_epi32(d1, _mm256_mullo_epi32(_mm256_set1_epi32(p.z[g1]),
                                                 _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s4 + 8))));
    acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d0), _mm256_set1_ps(p.s[g0] * a.sx[2 * c]), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d1), _mm256_set1_ps(p.s[g1] * a.sx[2 * c + 1]), acc1);
  }
  return hsum(_mm256_add_ps(acc0, acc1));
#else
  float acc = 0.f;
  for (int64_t c = 0; c < C; ++c)
    for (int h = 0; h < 2; ++h) {                // the chunk's two blocks of 32
      const int64_t b = 2 * c + h, g = b * QG_BLOCK / G;
      int32_t d = 0, sx = 0;
      for (int i = 0; i < QG_BLOCK; ++i) {
        const int32_t q = BITS == 4 ? (h ? w[CB * c + i] >> 4 : w[CB * c + i] & 0x0F) : w[CB * c + 32 * h + i];
        const int32_t xv = a.xq[b * QG_BLOCK + i];
        d += q * xv;
        sx += xv;
      }
      acc += float(d - p.z[g] * sx) * (p.s[g] * a.sx[b]);
    }
  return acc;
#endif
}

template <int BITS>
void rows_impl(const std::vector<QAct>& acts, const QWeight& w, float* y, bool accumulate) {
  const int64_t M = int64_t(acts.size()), N = w.N, K = w.K, G = w.G;
  const int64_t row_bytes = K * BITS / 8;
#if defined(__AVX2__) && !defined(QG_VNNI)
  const int32_t zoff = BITS == 8 ? 128 : 0;      // the AVX2 int8 path multiplies q - 128 (s8 for maddubs)
#else
  const int32_t zoff = 0;
#endif
  const int64_t grain = std::max<int64_t>(8, 16384 / row_bytes);   // >= ~16 KB of weights per task
  at::parallel_for(0, N, grain, [&](int64_t begin, int64_t end) {
    RowParams p;
    for (int64_t n = begin; n < end; ++n) {
      row_params(w, n, zoff, p);
      const uint8_t* wr = w.q + n * row_bytes;
#if defined(QG_VNNI)
      for (int64_t m0 = 0; m0 < M; m0 += 4) {    // up to 4 activation rows per pass over the weight row
        const QAct* a[4];
        float d[4];
        const int nm = int(std::min<int64_t>(4, M - m0));
        for (int j = 0; j < nm; ++j) a[j] = &acts[m0 + j];
        switch (nm) {
          case 1: dot_vnni<BITS, 1>(wr, p, K, G, a, d); break;
          case 2: dot_vnni<BITS, 2>(wr, p, K, G, a, d); break;
          case 3: dot_vnni<BITS, 3>(wr, p, K, G, a, d); break;
          default: dot_vnni<BITS, 4>(wr, p, K, G, a, d); break;
        }
        for (int j = 0; j < nm; ++j) put(y + (m0 + j) * N + n, d[j], accumulate);
      }
#else
      for (int64_t m = 0; m < M; ++m) put(y + m * N + n, dot_one<BITS>(wr, p, K, G, acts[m]), accumulate);
#endif
    }
  });
}

}  // namespace

void qgemv_rows(const float* x, int64_t M, const QWeight& w, float* y, bool accumulate) {
  std::vector<QAct> acts(M);
  for (int64_t m = 0; m < M; ++m) quantize_act(x + m * w.K, w.perm, w.K, acts[m]);
  if (w.bits == 4) rows_impl<4>(acts, w, y, accumulate);
  else rows_impl<8>(acts, w, y, accumulate);
}

QWeight qweight_of(const at::Tensor& q, const at::Tensor& s, const at::Tensor& z, const at::Tensor& perm) {
  TORCH_CHECK(q.scalar_type() == at::kByte && q.dim() == 3 && q.is_contiguous() && (q.size(2) == 32 || q.size(2) == 64),
              "packed weights must be contiguous uint8 (N, K/64, 32) for int4 or (N, K/64, 64) for int8");
  QWeight w;
  w.N = q.size(0); w.K = q.size(1) * QG_CHUNK; w.bits = q.size(2) == 32 ? 4 : 8;
  TORCH_CHECK(s.scalar_type() == at::kHalf && s.is_contiguous() && s.dim() == 2 && s.size(0) == w.N &&
              s.size(1) >= 1 && w.K % s.size(1) == 0, "scales must be contiguous fp16 (N, K/G)");
  w.G = w.K / s.size(1);
  TORCH_CHECK(w.G % QG_BLOCK == 0, "the group size must be a multiple of 32, not ", w.G);
  TORCH_CHECK(z.scalar_type() == at::kByte && z.is_contiguous() && z.sizes() == s.sizes(),
              "zeros must be contiguous uint8 shaped like the scales");
  w.q = q.data_ptr<uint8_t>(); w.s = s.data_ptr<c10::Half>(); w.z = z.data_ptr<uint8_t>();
  if (perm.numel()) {
    TORCH_CHECK(perm.scalar_type() == at::kInt && perm.is_contiguous() && perm.numel() == w.K,
                "perm must be K contiguous int32 column indices");
    w.perm = perm.data_ptr<int32_t>();
  }
  return w;
}

at::Tensor qgemv(at::Tensor x, at::Tensor q, at::Tensor s, at::Tensor z, at::Tensor perm) {
  TORCH_CHECK(x.scalar_type() == at::kFloat, "qgemv wants fp32 activations");
  const QWeight w = qweight_of(q, s, z, perm);
  TORCH_CHECK(x.size(-1) == w.K, "x has ", x.size(-1), " features, the weight ", w.K);
  return over_rows(x, w.N, [&](const float* xp, int64_t M, int64_t, float* op) { qgemv_rows(xp, M, w, op, false); });
}
