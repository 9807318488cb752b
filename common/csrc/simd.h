// SIMD helpers shared by the book's CPU kernels (ch06's GEMVs and fused decoder; built by common/cpp_ext.py).
//
// Every kernel has an ``#ifdef __AVX2__`` path and a scalar loop. common/cpp_ext.py compiles with
// ``-march=native`` minus what ``LLMIC_SIMD`` takes back (``SIMD_CFLAGS``), so the macros below say what this
// build may use, and ``llmic_simd_path()`` names it the way common.cpu.simd_level does.
#pragma once

#include <cstdint>
#include <string>

inline std::string llmic_simd_path() {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  return "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
  return "avx2";
#else
  return "scalar";
#endif
}

#ifdef __AVX2__
#include <immintrin.h>

// Software prefetch this many bytes ahead of each weight row being read. The hardware prefetcher alone
// leaves the int8 kernels at ~9 GB/s on this machine; asking for the line a few loads early gives
// ~16 GB/s (measured: 256 B ahead best, 1-8 KB ahead 13-15 GB/s, none 9-10 GB/s).
#ifndef PREFETCH_BYTES
#define PREFETCH_BYTES 256
#endif

static inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
static inline __m256 load8(const uint8_t* p) {   // 8 bytes -> 8 floats, widened in registers
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

static inline float hsum(__m256 v) {             // the sum of 8 floats
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_hadd_ps(s, s); s = _mm_hadd_ps(s, s); return _mm_cvtss_f32(s);
}

static inline int32_t hsum_i32(__m256i v) {      // the sum of 8 int32
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_hadd_epi32(s, s); s = _mm_hadd_epi32(s, s); return _mm_cvtsi128_si32(s);
}
#endif
