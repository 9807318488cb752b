"""A C++ extension built at run time (book 9.5): fused RMSNorm for CPU via ``torch.utils.cpp_extension``.

    python -m ch09_advanced.cpp_op            # builds once (about a minute), then times it against torch
    python -m ch09_advanced.cpp_op --smoke

``load_inline`` (through ``common.cpp_ext.load_cpp``) compiles the source below with g++ into a Python module,
cached under ``common.paths.cache_dir()/torch_extensions/ch09`` so later runs only load it. The op reads each row of x
once, accumulates the sum of squares in a register, then writes the scaled row once; eager PyTorch makes
~5 passes over memory (cast, square, mean, rsqrt-multiply, weight-multiply). Rows run in parallel with
``at::parallel_for`` (the ATen thread pool, the same threads ``torch.get_num_threads()`` reports).
"""

from __future__ import annotations

import torch

from common.bench import stamp_dict, time_fn
from common.cli import figures_main
from common.cpp_ext import load_cpp

CPP_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>

torch::Tensor rmsnorm(torch::Tensor x, torch::Tensor w, double eps) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && x.scalar_type() == torch::kFloat,
              "rmsnorm expects a contiguous 2-D float32 tensor");
  TORCH_CHECK(w.dim() == 1 && w.size(0) == x.size(1) && w.scalar_type() == torch::kFloat, "bad weight");
  auto y = torch::empty_like(x);
  const int64_t rows = x.size(0), n = x.size(1);
  const float* xp = x.data_ptr<float>();
  const float* wp = w.contiguous().data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = xp + r * n;
      float* yr = yp + r * n;
      float ss = 0.f;
      #pragma omp simd reduction(+:ss)
      for (int64_t i = 0; i < n; ++i) ss += xr[i] * xr[i];
      const float rstd = 1.f / std::sqrt(ss / n + (float)eps);
      #pragma omp simd
      for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * rstd * wp[i];
    }
  });
  return y;
}
"""


def build(verbose: bool = False):
    """Compile (first call) or load (later calls) the extension module; returns it."""
    return load_cpp("ch09_fused_rmsnorm", CPP_SOURCE, ["rmsnorm"], "ch09", verbose)


def rmsnorm_reference(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Eager torch, as ch04's RMSNorm writes it: x (R, N), w (N,) -> (R, N)."""
    x32 = x.float()
    return w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def run(smoke: bool = False) -> dict:
    import time

    t0 = time.perf_counter()
    ext = build()
    build_s = time.perf_counter() - t0
    rows, n = (256, 576) if smoke else (2048, 576)  # 2048 tokens x SmolLM2's hidden size
    x, w = torch.randn(rows, n), torch.randn(n)
    diff = float((ext.rmsnorm(x, w, 1e-5) - rmsnorm_reference(x, w)).abs().max())
    reps = 5 if smoke else 20
    t_cpp = time_fn(lambda: ext.rmsnorm(x, w, 1e-5), repeats=reps, warmup=2)
    t_ref = time_fn(lambda: rmsnorm_reference(x, w), repeats=reps, warmup=2)
    return {"rows": rows, "features": n, "build_or_load_s": build_s, "cpp_us": t_cpp.median * 1e6,
            "torch_us": t_ref.median * 1e6, "cpp_op_speedup": t_ref.median / t_cpp.median,
            "cpp_max_abs_diff": diff, "hardware": stamp_dict(dtype="fp32")}


def main(argv: list[str] | None = None) -> int:
    return figures_main("python -m ch09_advanced.cpp_op", __doc__, run,
                        "fused RMSNorm: C++ extension vs eager torch", argv)


if __name__ == "__main__":
    raise SystemExit(main())
