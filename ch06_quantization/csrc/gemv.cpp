// ch06's decode GEMV as operators: gemv_f32 (fp32 weights) and gemv_u8 (per-channel uint8 with a zero point).
// The kernel itself is gemv.h; Python side: ch06_quantization/cpu_gemv.py; tests: tests/ch06/test_cpu_gemv.py.
#include "gemv.h"
#include "ops.h"

template <typename W>
static at::Tensor gemv(at::Tensor x, const W* w, int64_t N, const float* scale, const float* zero) {
  return over_rows(x, N, [&](const float* xp, int64_t M, int64_t K, float* op) {
    gemv_rows<W>(xp, M, K, w, N, scale, zero, op, false);
  });
}

at::Tensor gemv_f32(at::Tensor x, at::Tensor w) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat && w.is_contiguous(),
              "gemv_f32 wants fp32 x and a contiguous fp32 weight");
  TORCH_CHECK(x.size(-1) == w.size(1), "x has ", x.size(-1), " features, the weight ", w.size(1));
  return gemv<float>(x, w.data_ptr<float>(), w.size(0), nullptr, nullptr);
}

at::Tensor gemv_u8(at::Tensor x, at::Tensor q, at::Tensor scale, at::Tensor zero) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && q.scalar_type() == at::kByte && q.is_contiguous(),
              "gemv_u8 wants fp32 x and a contiguous uint8 weight");
  TORCH_CHECK(x.size(-1) == q.size(1), "x has ", x.size(-1), " features, the weight ", q.size(1));
  auto s = scale.to(at::kFloat).contiguous(), z = zero.to(at::kFloat).contiguous();
  TORCH_CHECK(s.numel() == q.size(0) && z.numel() == q.size(0), "one scale and zero per output row");
  return gemv<uint8_t>(x, q.data_ptr<uint8_t>(), q.size(0), s.data_ptr<float>(), z.data_ptr<float>());
}
