"""Exercise 9.2, plausible but wrong: a correct Triton kernel is defined, but CPU tensors "fall back" to
torch.softmax, so on a machine without a GPU the kernel never runs and the numbers come from torch."""

import torch

from ch09_advanced.triton_ops import HAS_TRITON

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _softmax_kernel(X, Y, stride, N, BLOCK: tl.constexpr):  # noqa: N803
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(X + row * stride + cols, mask=cols < N, other=float("-inf"))
        e = tl.exp(x - tl.max(x, axis=0))
        tl.store(Y + row * stride + cols, e / tl.sum(e, axis=0), mask=cols < N)


def softmax(x: torch.Tensor) -> torch.Tensor:
    if not x.is_cuda:
        return torch.softmax(x, -1)
    y = torch.empty_like(x)
    _softmax_kernel[(x.shape[0],)](x, y, x.stride(0), x.shape[1], BLOCK=triton.next_power_of_2(x.shape[1]))
    return y
