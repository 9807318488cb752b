"""Exercise 9.2 (book 9.5): a row-wise softmax kernel in Triton, graded in the interpreter on CPU.

Task: write ``softmax(x (R, N)) -> (R, N)`` that launches one Triton program per row: load the row
(masked to N, padding with -inf), subtract its max, exponentiate, divide by the sum, store. Use
``ch09_advanced.triton_ops.HAS_TRITON``; importing ``triton_ops`` first sets ``TRITON_INTERPRET=1`` on a
machine without a GPU, so the kernel runs on CPU tensors. Grade: ``python -m common.grade 9.2`` (skipped
with a reason when triton is not installed).
"""

import torch

from ch09_advanced.triton_ops import HAS_TRITON

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _softmax_kernel(X, Y, stride, N, BLOCK: tl.constexpr):  # noqa: N803 - Triton's naming style
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        mask = cols < N
        x = tl.load(X + row * stride + cols, mask=mask, other=float("-inf")).to(tl.float32)
        e = tl.exp(x - tl.max(x, axis=0))
        tl.store(Y + row * stride + cols, e / tl.sum(e, axis=0), mask=mask)


def softmax(x: torch.Tensor) -> torch.Tensor:
    if not HAS_TRITON:
        raise RuntimeError("triton is not installed (pip install triton)")
    x = x.contiguous()
    y = torch.empty_like(x)
    _softmax_kernel[(x.shape[0],)](x, y, x.stride(0), x.shape[1], BLOCK=triton.next_power_of_2(x.shape[1]))
    return y
