// Packed-weight GEMV/GEMM for decode (qgemv.h says what it computes and the layout). A batch-1 decode step
// reads every weight once, so bytes per weight set its speed: int4 g64 reads 0.5 B + 3 B per 64 columns
// (0.55 B), int8 per channel 1 B, fp32 4 B. At batch 16 the same bytes feed 16 rows and the step turns into
// arithmetic, so the instructions per product count as well. The weights are never widened to fp32: each block
// of 32 activations is rounded to int8 once per call and the dot products are integer, the way llama.cpp pairs
// its Q4_0/Q8_0 weights with Q8_0 activations (our layout and zero points are our own).
//
// Why tiles of 16 rows: a register's 16 int32 lanes are 16 weight rows, not 16 pieces of one row. Each step
// multiplies 4 columns of 16 rows by 4 activations broadcast to every lane, so one weight load serves every
// activation row of the call, no row ever needs a horizontal sum, and the per-block work (the zero point, the
// int -> float convert, the scales) is done once per 16 rows instead of once per row:
//
//   AVX-512 VNNI  one vpdpbusd (u8 x s8, four products summed into each int32 lane) per step and activation
//                 row; one tile at a time against up to 8 activation rows, each sum split in chains so
//                 several are in flight (the weights stay one sequential stream: faster than 8 tiles at once);
//   AVX2          the same steps as two halves of 8 rows: maddubs (u8 x s8 -> int16 pairs) + madd -> int32;
//                 int4 weights keep a block's pairs in int16 and widen them once a block (they cannot
//                 overflow); int8 weights are shifted to s8 first (q - 128: maddubs of 255 x 127 would saturate);
//   scalar        one product at a time, the same block sums and the same fp32 epilogue.
// With int16 activations (the zeros stored as int16 select it) a step widens the weight bytes to int16 pairs
// and runs vpdpwssd / pmaddwd (two products a lane), the zero subtracted from the pairs (VNNI, and AVX2 int8
// weights) or taken off in the epilogue (AVX2 int4): ~256x finer activations at about half the integer
// throughput, for greedy tokens that stay with the fp32-activation reference.
// Each block's int32 sum is exact in all three and the fp32 epilogue (d - z * sum x, times s * sx, added in
// block order with one fused multiply-add) is the same, so the paths agree to the last bit where the build has
// FMA (tests/ch06/test_cpu_qgemv.py, each path built through LLMIC_SIMD).
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops.h"
#include "qgemv.h"
#include "rows.h"
#include "simd.h"

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define QG_VNNI 1
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define QG_AVX2 1
#endif

std::string qgemv_path() {
#if defined(QG_VNNI)
  return "avx512_vnni";
#elif defined(QG_AVX2)
  return "avx2";
#else
  return "scalar";
#endif
}

namespace {

constexpr int STEP = 64;   // bytes per step: 16 rows x 4 bytes
// Software prefetch distance in the weight stream (4 int4 blocks ahead). Tuned 2026-12-04 on the 2-core EPYC
// when the kernel read 8 tiles side by side (0 B 285 tok/s, 256 B 333-354, 512 B 373-392, 1 KB 342-417, 2 KB
// 345-367, 4 KB 322-332); reading one tile at a time (2026-12-06), 256 B to 4 KB were all within the noise.
constexpr int QG_PREFETCH = 1024;

// The M activation rows of one call, rounded once for every weight tile, in kernel column order (M, K), and per
// block of 32 its scale and the sum of its rounded values (M, K/32). int8 (``xq``) or int16 (``xw``); the int16
// ones are stored in pairs for ``vpdpwssd`` / ``pmaddwd``: each group of 4 columns as [x0, x2, x1, x3].
struct QActs {
  int64_t K = 0, B = 0;
  std::vector<int8_t> xq;
  std::vector<int16_t> xw;
  std::vector<float> sx, sum;
  const int8_t* x(int64_t m, int64_t b) const { return xq.data() + m * K + b * QG_BLOCK; }
  const int16_t* x16(int64_t m, int64_t b) const { return xw.data() + m * K + b * QG_BLOCK; }
};

constexpr int PAIR[4] = {0, 2, 1, 3};   // where column j of a group of 4 sits in QActs::xw (its own inverse)

void quantize_acts(const float* x, int64_t M, const int32_t* perm, int64_t K, int act_bits, QActs& a) {
  a.K = K; a.B = K / QG_BLOCK;
  const float levels = act_bits == 16 ? 32767.f : 127.f;
  if (act_bits == 16) a.xw.resize(M * K);
  else a.xq.resize(M * K);
  a.sx.resize(M * a.B); a.sum.resize(M * a.B);
  at::parallel_for(0, M * a.B, 64, [&](int64_t begin, int64_t end) {
    float v[QG_BLOCK];
    for (int64_t mb = begin; mb < end; ++mb) {
      const int64_t m = mb / a.B, b = mb % a.B;
      const float* xr = x + m * K;
      float amax = 0.f;
      for (int i = 0; i < QG_BLOCK; ++i) {
        const int64_t k = b * QG_BLOCK + i;
        v[i] = perm ? xr[perm[k]] : xr[k];
        amax = std::max(amax, std::fabs(v[i]));
      }
      const float s = amax > 0.f ? amax / levels : 1.f, inv = 1.f / s;
      int32_t total = 0;
      for (int i = 0; i < QG_BLOCK; ++i) {
        const int32_t r = int32_t(std::nearbyint(v[i] * inv));
        if (act_bits == 16) a.xw[m * K + b * QG_BLOCK + (i & ~3) + PAIR[i & 3]] = int16_t(r);
        else a.xq[m * K + b * QG_BLOCK + i] = int8_t(r);
        total += r;
      }
      a.sx[mb] = s;
      a.sum[mb] = float(total);
    }
  });
}

// The fp32 epilogue of one block, shared by every path: the exact block sum d minus z * (sum of the block's
// int8 activations) -- both integers below 2^24, so exact in fp32 -- times s * sx, added with one FMA.
inline float block_value(int32_t d, float z, float sum, float s, float sx, float acc) {
  return std::fma(float(d) - z * sum, s * sx, acc);
}

// Weight bytes per tile and block of 32 columns.
template <int BITS> constexpr int64_t block_bytes() { return BITS == 4 ? 4 * STEP : 8 * STEP; }

#if defined(QG_VNNI)
inline __m512i bcast4(const void* p) {   // 4 bytes (4 int8 or 2 int16 activations) in every int32 lane
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// One tile (16 rows) against NM activation rows from m0, over all of K. ACT 8: u8 weights x s8 activations
// (vpdpbusd, four products a lane), the zero point taken off as z * (sum of the block's activations). ACT 16: the
// weights widened to int16 pairs with the zero subtracted, x int16 activation pairs (vpdpwssd, two a lane).
// With fewer than 4 rows each (row, block) sum is split over CH independent chains, added at the block's end
// (int32, exact), so even one row keeps four vpdpbusd in flight while the weights are read as one sequential stream.
template <int BITS, int ACT, int NM>
void tile_vnni(const QWeight& w, int64_t t, const QActs& a, int64_t m0, float* y, bool accumulate) {
  constexpr int STEPS = BITS == 4 ? 4 : 8, CH = NM >= 4 ? 1 : NM >= 2 ? 2 : 4;
  const int64_t B = w.K / QG_BLOCK, GN = w.K / w.G, bpg = w.G / QG_BLOCK;
  const __m512i low = _mm512_set1_epi8(0x0F), even = _mm512_set1_epi32(0x00FF00FF);
  __m512 out[NM];
  for (int j = 0; j < NM; ++j) out[j] = _mm512_setzero_ps();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t g = b / bpg, o = (t * GN + g) * QG_TILE;
    const uint8_t* wb = w.q + (t * B + b) * block_bytes<BITS>();
    __m512i d[NM][CH];
    for (int j = 0; j < NM; ++j)
      for (int c = 0; c < CH; ++c) d[j][c] = _mm512_setzero_si512();
    __m512i z16 = _mm512_setzero_si512();   // ACT 16: each row's zero in both int16 halves of its lane
    if constexpr (ACT == 16) {
      const __m512i z = _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.zw + o)));
      z16 = _mm512_or_si512(z, _mm512_slli_epi32(z, 16));
    }
    // 4 columns of 16 rows (one byte each in ``p``) against activation column ``c`` onwards, into chain ``ch``
    auto step = [&](__m512i p, int c, int ch) {
      if constexpr (ACT == 16) {
        const __m512i pe = _mm512_sub_epi16(_mm512_and_si512(p, even), z16);   // columns c, c + 2
        const __m512i po = _mm512_sub_epi16(_mm512_and_si512(_mm512_srli_epi32(p, 8), even), z16);   // c + 1, c + 3
        for (int j = 0; j < NM; ++j) {
          const int16_t* x = a.x16(m0 + j, b) + c;
          d[j][ch] = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(d[j][ch], pe, bcast4(x)), po, bcast4(x + 2));
        }
      } else {
        for (int j = 0; j < NM; ++j) d[j][ch] = _mm512_dpbusd_epi32(d[j][ch], p, bcast4(a.x(m0 + j, b) + c));
      }
    };
    for (int i = 0; i < STEPS; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(wb + STEP * i) + QG_PREFETCH, _MM_HINT_T0);
      const __m512i v = _mm512_loadu_si512(wb + STEP * i);
      if constexpr (BITS == 4) {
        step(_mm512_and_si512(v, low), 8 * i, (2 * i) % CH);
        step(_mm512_and_si512(_mm512_srli_epi16(v, 4), low), 8 * i + 4, (2 * i + 1) % CH);
      } else {
        step(v, 4 * i, i % CH);
      }
    }
    const __m512 sw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.s + o)));
    for (int j = 0; j < NM; ++j) {
      const int64_t ab = (m0 + j) * B + b;
      __m512i sum = d[j][0];
      for (int c = 1; c < CH; ++c) sum = _mm512_add_epi32(sum, d[j][c]);
      __m512 df = _mm512_cvtepi32_ps(sum);
      if constexpr (ACT == 8) {
        const __m512 zf = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.z + o))));
        df = _mm512_fnmadd_ps(zf, _mm512_set1_ps(a.sum[ab]), df);
      }
      out[j] = _mm512_fmadd_ps(df, _mm512_mul_ps(sw, _mm512_set1_ps(a.sx[ab])), out[j]);
    }
  }
  for (int j = 0; j < NM; ++j) {
    float* yp = y + (m0 + j) * w.N + t * QG_TILE;
    _mm512_storeu_ps(yp, accumulate ? _mm512_add_ps(_mm512_loadu_ps(yp), out[j]) : out[j]);
  }
}

using TileFn = void (*)(const QWeight&, int64_t, const QActs&, int64_t, float*, bool);

template <int BITS, int ACT>
TileFn tile_fn(int nm) {
  switch (nm) {
    case 1: return &tile_vnni<BITS, ACT, 1>;
    case 2: return &tile_vnni<BITS, ACT, 2>;
    case 3: return &tile_vnni<BITS, ACT, 3>;
    case 4: return &tile_vnni<BITS, ACT, 4>;
    case 5: return &tile_vnni<BITS, ACT, 5>;
    case 6: return &tile_vnni<BITS, ACT, 6>;
    case 7: return &tile_vnni<BITS, ACT, 7>;
    default: return &tile_vnni<BITS, ACT, 8>;
  }
}

constexpr int MAX_NM = 8;

// Tiles [t0, t1) against all M rows, in passes of up to 8 activation rows, each pass one tile at a time: its
// weights one sequential stream (measured 2026-12-06 on the 2-core EPYC: batch-1 int4 decode 13-21% faster than
// reading 8 tiles side by side; at 5 and 16 rows this order and the old one were within a few percent).
template <int BITS, int ACT>
void run_tiles(const QWeight& w, int64_t t0, int64_t t1, const QActs& a, int64_t M, float* y, bool accumulate) {
  for (int64_t m0 = 0; m0 < M; m0 += MAX_NM) {
    const int nm = int(std::min<int64_t>(MAX_NM, M - m0));
    const TileFn f = tile_fn<BITS, ACT>(nm);
    for (int64_t t = t0; t < t1; ++t) f(w, t, a, m0, y, accumulate);
  }
}

#elif defined(QG_AVX2)
inline __m256i bcast4(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Rows 8h .. 8h + 7 of tile t against NM activation rows from m0, over all of K (ACT as for tiles_vnni).
template <int BITS, int ACT, int NM>
void half_tile_avx2(const QWeight& w, int64_t t, int h, const QActs& a, int64_t m0, float* y, bool accumulate) {
  constexpr int STEPS = BITS == 4 ? 4 : 8;
  const int64_t B = w.K / QG_BLOCK, GN = w.K / w.G, bpg = w.G / QG_BLOCK;
  const __m256i low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8(char(0x80)),
                even = _mm256_set1_epi32(0x00FF00FF);
  const __m256 zoff = _mm256_set1_ps(BITS == 8 ? 128.f : 0.f);   // ACT 8: int8 weights were shifted by 128
  __m256 out[NM];
  for (int j = 0; j < NM; ++j) out[j] = _mm256_setzero_ps();
  for (int64_t b = 0; b < B; ++b) {
    const uint8_t* wb = w.q + (t * B + b) * block_bytes<BITS>() + 32 * h;
    const int64_t o = (t * GN + b / bpg) * QG_TILE + 8 * h;
    __m256i z16 = _mm256_setzero_si256();
    if constexpr (ACT == 16 && BITS == 8) {
      const __m256i z = _mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.zw + o)));
      z16 = _mm256_or_si256(z, _mm256_slli_epi32(z, 16));
    }
    __m256i d[NM];
    for (int j = 0; j < NM; ++j) d[j] = _mm256_setzero_si256();
    // int4 x int16: the zero comes off in the epilogue as z * (sum of the block's activations), as for int8
    // activations (|sum (q - z) x| <= 32 * 16 * 32767 < 2^24, so the fused multiply-add is exact: same bits
    // as subtracting it from every weight, two instructions a step fewer). int8 weights x int16 would not fit.
    constexpr bool ZSUM = ACT == 8 || BITS == 4;
    auto step = [&](__m256i p, int c) {   // 4 columns of 8 rows against activation column c onwards
      if constexpr (ACT == 16) {         // pmaddwd: int16 pairs (int8 weights: the zero subtracted there)
        __m256i pe = _mm256_and_si256(p, even), po = _mm256_and_si256(_mm256_srli_epi32(p, 8), even);
        if constexpr (!ZSUM) { pe = _mm256_sub_epi16(pe, z16); po = _mm256_sub_epi16(po, z16); }
        for (int j = 0; j < NM; ++j) {
          const int16_t* x = a.x16(m0 + j, b) + c;
          d[j] = _mm256_add_epi32(d[j], _mm256_add_epi32(_mm256_madd_epi16(pe, bcast4(x)),
                                                         _mm256_madd_epi16(po, bcast4(x + 2))));
        }
      } else if constexpr (BITS == 4) {  // int16 sums, widened once a block (below)
        for (int j = 0; j < NM; ++j) d[j] = _mm256_add_epi16(d[j], _mm256_maddubs_epi16(p, bcast4(a.x(m0 + j, b) + c)));
      } else {                           // q - 128 as s8; |q - 128| <= 128 times |x| <= 127: pairs fit int16
        const __m256i ws = _mm256_xor_si256(p, flip), aw = _mm256_sign_epi8(ws, ws);
        for (int j = 0; j < NM; ++j) {
          const __m256i x = _mm256_sign_epi8(bcast4(a.x(m0 + j, b) + c), ws);
          d[j] = _mm256_add_epi32(d[j], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, x), ones));
        }
      }
    };
    auto load_step = [&](int i) {   // 32 bytes: 4 (int8) or 8 (int4) columns of the 8 rows
      _mm_prefetch(reinterpret_cast<const char*>(wb + STEP * i) + QG_PREFETCH, _MM_HINT_T0);
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + STEP * i));
      if constexpr (BITS == 4) {
        step(_mm256_and_si256(v, low), 8 * i);
        step(_mm256_and_si256(_mm256_srli_epi16(v, 4), low), 8 * i + 4);
      } else {
        step(v, 4 * i);
      }
    };
    if constexpr (NM == 1) {
      for (int i = 0; i < STEPS; ++i) load_step(i);
    } else {   // kept a loop: unrolled, g++ computes all of a block's products before summing any, and spills
#pragma GCC unroll 1   // them (measured 2026-12-07 on 3072x576 x 16 rows, 1 thread: 404 -> 353 us not unrolled)
      for (int i = 0; i < STEPS; ++i) load_step(i);
    }
    // int4 x int8: each int16 lane holds 2 products of each of the block's 8 steps, |sum| <= 16 * 15 * 127 =
    // 30480 < 32767, so it stays exact in int16 and one madd a block (not one a step) widens it to int32.
    if constexpr (BITS == 4 && ACT == 8)
      for (int j = 0; j < NM; ++j) d[j] = _mm256_madd_epi16(d[j], ones);
    const __m256 sw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.s + o)));
    __m256 zf = _mm256_setzero_ps();   // the 8 rows' zeros, taken off below as z * (sum of the block's x)
    if constexpr (ACT == 8)
      zf = _mm256_sub_ps(
          _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.z + o)))), zoff);
    else if constexpr (ZSUM)
      zf = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.zw + o))));
    for (int j = 0; j < NM; ++j) {
      const int64_t ab = (m0 + j) * B + b;
      __m256 df = _mm256_cvtepi32_ps(d[j]);
      if constexpr (ZSUM) df = _mm256_fnmadd_ps(zf, _mm256_set1_ps(a.sum[ab]), df);
      out[j] = _mm256_fmadd_ps(df, _mm256_mul_ps(sw, _mm256_set1_ps(a.sx[ab])), out[j]);
    }
  }
  for (int j = 0; j < NM; ++j) {
    float* yp = y + (m0 + j) * w.N + t * QG_TILE + 8 * h;
    _mm256_storeu_ps(yp, accumulate ? _mm256_add_ps(_mm256_loadu_ps(yp), out[j]) : out[j]);
  }
}

template <int BITS, int ACT>
void run_tiles(const QWeight& w, int64_t t0, int64_t t1, const QActs& a, int64_t M, float* y, bool accumulate) {
  for (int64_t t = t0; t < t1; ++t)
    for (int h = 0; h < 2; ++h)
      for (int64_t m0 = 0; m0 < M; m0 += 4) {   // 16 ymm registers: up to 4 activation rows a pass
        switch (std::min<int64_t>(4, M - m0)) {
          case 1: half_tile_avx2<BITS, ACT, 1>(w, t, h, a, m0, y, accumulate); break;
          case 2: half_tile_avx2<BITS, ACT, 2>(w, t, h, a, m0, y, accumulate); break;
          case 3: half_tile_avx2<BITS, ACT, 3>(w, t, h, a, m0, y, accumulate); break;
          default: half_tile_avx2<BITS, ACT, 4>(w, t, h, a, m0, y, accumulate); break;
        }
      }
}

#else
// The reference path: the layout read one byte at a time, the same block sums and epilogue.
template <int BITS, int ACT>
void run_tiles(const QWeight& w, int64_t t0, int64_t t1, const QActs& a, int64_t M, float* y, bool accumulate) {
  constexpr int STEPS = BITS == 4 ? 4 : 8;
  const int64_t B = w.K / QG_BLOCK, GN = w.K / w.G, bpg = w.G / QG_BLOCK;
  for (int64_t t = t0; t < t1; ++t)
    for (int r = 0; r < QG_TILE; ++r)
      for (int64_t m = 0; m < M; ++m) {
        float acc = 0.f;
        for (int64_t b = 0; b < B; ++b) {
          const uint8_t* wb = w.q + (t * B + b) * block_bytes<BITS>() + 4 * r;
          const int64_t o = (t * GN + b / bpg) * QG_TILE + r;
          const int32_t zr = ACT == 16 ? int32_t(w.zw[o]) : 0;
          auto xv = [&](int c) {   // activation column c of block b
            return ACT == 16 ? int32_t(a.x16(m, b)[(c & ~3) + PAIR[c & 3]]) : int32_t(a.x(m, b)[c]);
          };
          int32_t d = 0;
          for (int i = 0; i < STEPS; ++i)
            for (int j = 0; j < 4; ++j) {
              const int32_t q = wb[STEP * i + j];
              if constexpr (BITS == 4) d += ((q & 0x0F) - zr) * xv(8 * i + j) + ((q >> 4) - zr) * xv(8 * i + 4 + j);
              else d += (q - zr) * xv(4 * i + j);
            }
          const float sx = a.sx[m * B + b], s = float(w.s[o]);
          acc = ACT == 16 ? std::fma(float(d), s * sx, acc) : block_value(d, float(w.z[o]), a.sum[m * B + b], s, sx, acc);
        }
        put(y + m * w.N + t * QG_TILE + r, acc, accumulate);
      }
}
#endif

}  // namespace

void qgemv_rows(const float* x, int64_t M, const QWeight& w, float* y, bool accumulate) {
  QActs acts;
  quantize_acts(x, M, w.perm, w.K, w.act_bits, acts);
  const int64_t T = w.N / QG_TILE, tile_bytes = QG_TILE * w.K * w.bits / 8;
  const int64_t grain = std::max<int64_t>(8, 16384 / tile_bytes);   // >= 8 tiles, >= ~16 KB of weights a task
  at::parallel_for(0, T, grain, [&](int64_t t0, int64_t t1) {
    if (w.act_bits == 16) {
      if (w.bits == 4) run_tiles<4, 16>(w, t0, t1, acts, M, y, accumulate);
      else run_tiles<8, 16>(w, t0, t1, acts, M, y, accumulate);
    } else {
      if (w.bits == 4) run_tiles<4, 8>(w, t0, t1, acts, M, y, accumulate);
      else run_tiles<8, 8>(w, t0, t1, acts, M, y, accumulate);
    }
  });
}

QWeight qweight_of(const at::Tensor& q, const at::Tensor& s, const at::Tensor& z, const at::Tensor& perm) {
  TORCH_CHECK(q.scalar_type() == at::kByte && q.dim() == 4 && q.is_contiguous() && q.size(3) == STEP &&
                  (q.size(2) == 4 || q.size(2) == 8),
              "packed weights must be contiguous uint8 (N/16, K/32, 4, 64) for int4 or (N/16, K/32, 8, 64) for int8");
  QWeight w;
  w.N = q.size(0) * QG_TILE; w.K = q.size(1) * QG_BLOCK; w.bits = q.size(2) == 4 ? 4 : 8;
  TORCH_CHECK(s.scalar_type() == at::kHalf && s.is_contiguous() && s.dim() == 3 && s.size(0) == q.size(0) &&
                  s.size(2) == QG_TILE && s.size(1) >= 1 && w.K % s.size(1) == 0,
              "scales must be contiguous fp16 (N/16, K/G, 16)");
  w.G = w.K / s.size(1);
  TORCH_CHECK(w.G % QG_BLOCK == 0, "the group size must be a multiple of 32, not ", w.G);
  TORCH_CHECK((z.scalar_type() == at::kByte || z.scalar_type() == at::kShort) && z.is_contiguous() &&
                  z.sizes() == s.sizes(),
              "zeros must be contiguous uint8 (int8 activations) or int16 (int16 activations) shaped like the scales");
  w.q = q.data_ptr<uint8_t>(); w.s = s.data_ptr<c10::Half>();
  if (z.scalar_type() == at::kShort) { w.zw = z.data_ptr<int16_t>(); w.act_bits = 16; }
  else w.z = z.data_ptr<uint8_t>();
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
