"""A fused RMSNorm kernel in Triton (book 9.5): one program per row, one read and one write of x.

    python -m ch09_advanced.triton_ops            # on GPU: real kernel; on CPU: TRITON_INTERPRET=1
    python -m ch09_advanced.triton_ops --smoke

Eager PyTorch RMSNorm launches ~5 kernels (cast, square, mean, rsqrt, two multiplies), each reading and
writing the whole activation; the fused kernel loads a row once into registers, reduces it, and stores
the normalised row once. Without a GPU the same kernel runs in Triton's interpreter
(``TRITON_INTERPRET=1``, numpy underneath): correct but slow, so it is a correctness check, not a benchmark.
"""

import importlib.util
import os

import torch

from common.bench import stamp_dict, time_fn
from common.cli import figures_main

HAS_TRITON = importlib.util.find_spec("triton") is not None


def rmsnorm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """x (R, N), weight (N,) -> (R, N): what ch04's RMSNorm computes."""
    x32 = x.float()
    return (weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps))).to(x.dtype)


if HAS_TRITON:
    if not torch.cuda.is_available():  # must precede ``import triton``: the flag is read once, at import
        os.environ.setdefault("TRITON_INTERPRET", "1")
    import triton
    import triton.language as tl

    def _rmsnorm_kernel(X, W, Y, stride, N, eps, BLOCK: tl.constexpr):  # noqa: N803 - Triton's naming style
        row = tl.program_id(0)  # one program per row of x
        cols = tl.arange(0, BLOCK)
        mask = cols < N
        x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)  # the only read of x
        rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)  # the only write


def build_kernel(interpret: bool):
    """``triton.jit`` the kernel; ``interpret=True`` makes it run on CPU tensors in the interpreter."""
    if not HAS_TRITON:
        raise RuntimeError("triton is not installed (pip install triton); the torch reference is used instead.")
    if interpret and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("set TRITON_INTERPRET=1 before triton is imported to run the kernel on CPU.")
    return triton.jit(_rmsnorm_kernel)


def rmsnorm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5, kernel=None) -> torch.Tensor:
    """x (R, N) contiguous, weight (N,) -> (R, N) through the Triton kernel (interpreter when x is on CPU)."""
    if x.dim() != 2 or not x.is_contiguous():
        raise ValueError("rmsnorm_triton expects a contiguous 2-D tensor (rows, features)")
    kernel = kernel or build_kernel(interpret=x.device.type == "cpu")
    y = torch.empty_like(x)
    kernel[(x.shape[0],)](x, weight, y, x.stride(0), x.shape[1], eps, BLOCK=triton.next_power_of_2(x.shape[1]))
    return y


def run(smoke: bool = False) -> dict:
    rows, n = (8, 576) if smoke else (64, 576)
    on_gpu = torch.cuda.is_available() and HAS_TRITON
    dev = "cuda" if on_gpu else "cpu"
    x, w = torch.randn(rows, n, device=dev), torch.randn(n, device=dev)
    out = {"triton_installed": HAS_TRITON, "device": dev, "rows": rows, "features": n, "hardware": stamp_dict(dtype="fp32")}
    if not HAS_TRITON:
        print("triton is not installed, so only the torch reference runs; pip install triton to try the kernel.")
        return {**out, "triton_max_abs_diff": None, "mode": "unavailable"}
    if not on_gpu:
        print("No GPU: running the Triton kernel in the interpreter (TRITON_INTERPRET=1), correctness only.")
    kernel = build_kernel(interpret=not on_gpu)
    got, ref = rmsnorm_triton(x, w, kernel=kernel), rmsnorm_reference(x, w)
    out.update(triton_max_abs_diff=float((got - ref).abs().max()), mode="gpu" if on_gpu else "interpreter")
    if on_gpu:  # timings only mean something on the real kernel
        t_k = time_fn(lambda: rmsnorm_triton(x, w, kernel=kernel), repeats=20, device=dev)
        t_r = time_fn(lambda: rmsnorm_reference(x, w), repeats=20, device=dev)
        out.update(triton_us=t_k.median * 1e6, torch_us=t_r.median * 1e6, triton_speedup=t_r.median / t_k.median)
    return out


def main(argv: list[str] | None = None) -> int:
    return figures_main("python -m ch09_advanced.triton_ops", __doc__, run, "Triton RMSNorm", argv)


if __name__ == "__main__":
    raise SystemExit(main())
