"""fp32 weights laid out for decode: one sequential stream per thread (book 6.2, 9.3; used by cpu_decode).

A batch-1 decode step reads every weight once, so its speed is how fast the GEMVs stream memory.
``cpu_gemv`` reads row-major rows in pairs: each thread walks two rows at once, and the hardware
prefetcher sees two streams that end every 2-6 KB. This layout turns a matrix into ONE stream per
thread: blocks of 4 rows, and inside a block, for each group of 8 columns, the 4 rows' 8 values (128 B)
one after the other:

    row-major (N, K)            ->  (N/4, K/8, 32)
    r0: a0..a7 a8..a15 ...          block 0: r0[0:8] r1[0:8] r2[0:8] r3[0:8] r0[8:16] r1[8:16] ...
    r1: b0..b7 b8..b15 ...          block 1: r4[0:8] ...

The kernel keeps one accumulator per row of the block (and per activation row, up to 3 at a time, so a
verification pass of a few tokens reads each block from memory once and from L1 after that).

Measured on the embedded model's 211 linears (``python -m ch06_quantization.cpu_packed``, 2 threads,
2026-11-26, three runs): one activation row in 24-35 ms against 35-47 ms row-major (1.2-1.45x), five
rows in 38-48 ms against 46-51 ms, eight rows in 45-47 ms against 52-63 ms. The copy costs as much memory as the fp32 weights, which is why ``cpu_decode.FusedDecoder`` makes it
optional (``packed=``) and shares it between decoders over the same blocks (``reuse=``).

    python -m ch06_quantization.cpu_packed          # row-major vs packed, 1..8 rows
    python -m ch06_quantization.cpu_packed --smoke
"""

from __future__ import annotations

import torch

CPP_SOURCE = r"""
// fp32 weights re-laid out so that each thread reads ONE sequential stream: blocks of 4 rows, and inside a
// block, for each group of 8 columns, the 4 rows' 8 values (128 B) one after the other. Shape (N/4, K/8, 32).
// Measured on the model's linears here, one activation row: 24-25 ms (~22 GB/s) against 35-36 ms for
// row-major rows read in pairs (gemv_rows).
constexpr int PACK = 4;

torch::Tensor pack_rows(torch::Tensor w) {
  TORCH_CHECK(w.dim() == 2 && w.scalar_type() == at::kFloat && w.is_contiguous(), "pack_rows wants a contiguous fp32 matrix");
  const int64_t N = w.size(0), K = w.size(1);
  TORCH_CHECK(N % PACK == 0 && K % 8 == 0, "pack_rows wants rows divisible by ", PACK, " and columns by 8, got ",
              N, " x ", K);
  auto p = torch::empty({N / PACK, K / 8, PACK * 8}, w.options());
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
static void gemv_packed(const float* xp, int64_t M, int64_t K, const float* p, int64_t N, float* op, bool accumulate) {
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

torch::Tensor gemv_f32_packed(torch::Tensor x, torch::Tensor p) {   // x (M, K) -> (M, N) on pack_rows's layout
  TORCH_CHECK(p.dim() == 3 && p.size(2) == PACK * 8 && x.scalar_type() == at::kFloat && x.dim() == 2 &&
              x.size(1) == p.size(1) * 8, "gemv_f32_packed wants x (M, K) fp32 and a pack_rows weight");
  const int64_t N = p.size(0) * PACK;
  return over_rows(x, N, [&](const float* xp, int64_t M, int64_t K, float* op) {
    gemv_packed(xp, M, K, p.data_ptr<float>(), N, op, false);
  });
}

"""

FUNCTIONS = ["pack_rows", "gemv_f32_packed"]
ROWS_PER_BLOCK = 4


def _module():
    from ch06_quantization.cpu_kernels import module

    return module()


def can_pack(w: torch.Tensor) -> bool:
    """Whether ``w`` fits the layout: a 2-D fp32 matrix with rows divisible by 4 and columns by 8."""
    return w.dim() == 2 and w.dtype == torch.float32 and w.shape[0] % ROWS_PER_BLOCK == 0 and w.shape[1] % 8 == 0


def pack_rows(w: torch.Tensor) -> torch.Tensor:
    """(N, K) fp32 -> the packed copy (N/4, K/8, 32); ValueError when the shape does not fit."""
    if not can_pack(w):
        raise ValueError(f"the packed layout wants an fp32 matrix with rows divisible by {ROWS_PER_BLOCK} and "
                         f"columns by 8, not {tuple(w.shape)} {w.dtype}")
    return _module().pack_rows(w.contiguous())


def gemv_packed(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """``x (M, K) @ w.T`` on the packed copy of ``w``: (M, N)."""
    return _module().gemv_f32_packed(x, packed)


def main(argv: list[str] | None = None) -> int:
    import time

    from ch04_kvcache.model import LlamaModel
    from ch06_quantization.cpu_gemv import _module as gemv_module
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch06_quantization.cpu_packed", __doc__)
    add_common_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        model = LlamaModel.from_pretrained(args.model, load_format=args.load_format).float().eval()
        weights = [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Linear)]
        weights = weights[:14] if args.smoke else weights
        packed = [pack_rows(w) for w in weights]
        lib = gemv_module()
        nbytes = sum(w.numel() * 4 for w in weights)

        def best(fn, repeats: int) -> float:
            out = float("inf")
            for _ in range(repeats + 1):  # the first pass warms up
                t0 = time.perf_counter()
                fn()
                out = min(out, time.perf_counter() - t0)
            return out

        rows = []
        for m in (1, 3) if args.smoke else (1, 2, 3, 5, 8):
            xs = {k: torch.randn(m, k) for k in {w.shape[1] for w in weights}}
            t_rm = best(lambda xs=xs: [lib.gemv_f32(xs[w.shape[1]], w) for w in weights], 2 if args.smoke else 5)
            t_pk = best(lambda xs=xs: [gemv_packed(xs[p.shape[1] * 8], p) for p in packed], 2 if args.smoke else 5)
            rows.append({"rows": m, "row-major ms": 1e3 * t_rm, "packed ms": 1e3 * t_pk,
                         "packed GB/s": nbytes / t_pk / 1e9, "packed vs row-major": t_rm / t_pk})
        if not args.json:
            print_table(rows, title=f"{len(weights)} linears ({nbytes / 1e6:.0f} MB fp32), one pass each, "
                                    f"{torch.get_num_threads()} threads")
        emit_json({"linears": len(weights), "fp32_mb": nbytes / 1e6, "rows": rows,
                   "packed_vs_row_major_1_row": rows[0]["packed vs row-major"],
                   "hardware": stamp_dict(dtype="fp32", torch_threads=torch.get_num_threads())})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
