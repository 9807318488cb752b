"""Exercise 9.2 (book 9.5): a row-wise softmax kernel in Triton, graded in the interpreter on CPU.

Task: write ``softmax(x (R, N)) -> (R, N)`` that launches one Triton program per row: load the row
(masked to N, padding with -inf), subtract its max, exponentiate, divide by the sum, store. Use
``ch09_advanced.triton_ops.HAS_TRITON``; importing ``triton_ops`` first sets ``TRITON_INTERPRET=1`` on a
machine without a GPU, so the kernel runs on CPU tensors. Grade: ``python -m common.grade 9.2`` (skipped
with a reason when triton is not installed).
"""

import torch

from ch09_advanced.triton_ops import HAS_TRITON  # noqa: F401 - import first: it sets TRITON_INTERPRET


def softmax(x: torch.Tensor) -> torch.Tensor:
    """x (R, N) -> softmax over the last dimension, computed by a Triton kernel (one program per row)."""
    raise NotImplementedError("exercise 9.2: @triton.jit a per-row softmax kernel and launch it")
