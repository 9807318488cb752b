"""A C++ extension built at run time (book 9.5): fused RMSNorm for CPU via ``torch.utils.cpp_extension``.

    python -m ch09_advanced.cpp_op            # builds once (about a minute), then times it against torch
    python -m ch09_advanced.cpp_op --smoke

``torch.utils.cpp_extension.load`` (through ``common.cpp_ext.load_extension``) compiles ``csrc/rmsnorm.cpp``
with g++ into a Python module, cached under ``common.paths.cache_dir()/torch_extensions/<isa>/ch09_fused_rmsnorm``
so later runs only load it. The op reads each row of x
once, accumulates the sum of squares in a register, then writes the scaled row once; eager PyTorch makes
~5 passes over memory (cast, square, mean, rsqrt-multiply, weight-multiply). Rows run in parallel with
``at::parallel_for`` (the ATen thread pool, the same threads ``torch.get_num_threads()`` reports).
"""

from __future__ import annotations

from pathlib import Path

import torch

from common.bench import stamp_dict, time_fn
from common.cli import figures_main
from common.cpp_ext import load_extension

SOURCES = [Path(__file__).resolve().parent / "csrc" / "rmsnorm.cpp"]


def build(verbose: bool = False):
    """Compile (first call) or load (later calls) the extension module; returns it."""
    return load_extension("ch09_fused_rmsnorm", SOURCES, verbose=verbose)


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
