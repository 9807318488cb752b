// Paged decode attention for the CPU: PagedAttention's own kernel (book 4.3.2; measured in 9.5).
// Built by ch04_kvcache/paged_decode_cpu.py through common/cpp_ext.py; tests/ch04/test_cpp_paged_decode.py
// holds it to ch04's naive paged attention.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

// q (S, H, D); k_flat, v_flat (num_slots, Hkv, D); tables (S, max_blocks) long; ctx (S,) long -> (S, H, D)
torch::Tensor paged_decode(torch::Tensor q, torch::Tensor k_flat, torch::Tensor v_flat, torch::Tensor tables,
                           torch::Tensor ctx, int64_t block_size, double scale) {
  TORCH_CHECK(q.scalar_type() == torch::kFloat && k_flat.scalar_type() == torch::kFloat &&
              v_flat.scalar_type() == torch::kFloat, "paged_decode is written for float32");
  TORCH_CHECK(q.is_contiguous() && k_flat.is_contiguous() && v_flat.is_contiguous(), "contiguous inputs");
  const int64_t S = q.size(0), H = q.size(1), D = q.size(2), Hkv = k_flat.size(1);
  TORCH_CHECK(H % Hkv == 0, "query heads must be a multiple of KV heads");
  const int64_t G = H / Hkv, max_blocks = tables.size(1);
  auto tab = tables.contiguous();
  auto lens = ctx.contiguous();
  auto out = torch::empty_like(q);
  const float* qp = q.data_ptr<float>();
  const float* kp = k_flat.data_ptr<float>();
  const float* vp = v_flat.data_ptr<float>();
  const int64_t* tp = tab.data_ptr<int64_t>();
  const int64_t* lp = lens.data_ptr<int64_t>();
  float* op = out.data_ptr<float>();
  const float sc = (float)scale;
  // one task per sequence: each token's K row (all KV heads, contiguous) is read once, for all H heads
  at::parallel_for(0, S, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores, acc(H * D), mx(H), sum(H);
    for (int64_t s = begin; s < end; ++s) {
      const int64_t n = lp[s];
      scores.resize(H * n);
      const float* qs = qp + s * H * D;
      std::fill(mx.begin(), mx.end(), -std::numeric_limits<float>::infinity());
      for (int64_t t = 0; t < n; ++t) {                     // pass 1: q . k for every head
        const int64_t slot = tp[s * max_blocks + t / block_size] * block_size + t % block_size;
        const float* krow = kp + slot * Hkv * D;
        for (int64_t h = 0; h < H; ++h) {
          const float* qh = qs + h * D;
          const float* k = krow + (h / G) * D;              // query head h reads KV head h / G
          float dot = 0.f;
          #pragma omp simd reduction(+:dot)
          for (int64_t i = 0; i < D; ++i) dot += qh[i] * k[i];
          dot *= sc;
          scores[h * n + t] = dot;
          mx[h] = std::max(mx[h], dot);
        }
      }
      for (int64_t h = 0; h < H; ++h) {                     // softmax numerators and their sums
        float* row = scores.data() + h * n;
        float total = 0.f;
        for (int64_t t = 0; t < n; ++t) {
          row[t] = std::exp(row[t] - mx[h]);
          total += row[t];
        }
        sum[h] = total;
      }
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t t = 0; t < n; ++t) {                     // pass 2: each V row read once
        const int64_t slot = tp[s * max_blocks + t / block_size] * block_size + t % block_size;
        const float* vrow = vp + slot * Hkv * D;
        for (int64_t h = 0; h < H; ++h) {
          const float p = scores[h * n + t];
          const float* v = vrow + (h / G) * D;
          float* a = acc.data() + h * D;
          #pragma omp simd
          for (int64_t i = 0; i < D; ++i) a[i] += p * v[i];
        }
      }
      for (int64_t h = 0; h < H; ++h) {
        float* o = op + (s * H + h) * D;
        const float inv = 1.f / sum[h];
        for (int64_t i = 0; i < D; ++i) o[i] = acc[h * D + i] * inv;
      }
    }
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("paged_decode", &paged_decode, "paged decode attention reading K/V in place through the block tables");
}
