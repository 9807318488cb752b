"""Exercise 9.3 (book 9.4): tiled attention with an online softmax (the FlashAttention recurrence).

Task: ``tiled_attention(q (N, D), k (M, D), v (M, D), block: int) -> (N, D)`` equal to
``softmax(q k^T / sqrt(D)) v`` (no mask) while never holding more than a (N, block) slice of scores:
walk K/V in blocks of ``block`` rows, keep per query row a running max ``m``, running sum ``l`` and an
unnormalised output ``acc``, rescale them by ``exp(m_old - m_new)`` when the max grows, divide by ``l``
at the end. Grade: ``python -m common.grade 9.3``.
"""

from __future__ import annotations

import torch


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int = 64) -> torch.Tensor:
    """q (N, D), k/v (M, D) -> (N, D), walking K/V ``block`` rows at a time."""
    raise NotImplementedError("exercise 9.3: online softmax over K/V blocks")
