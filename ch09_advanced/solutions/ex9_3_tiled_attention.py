"""Exercise 9.3 (book 9.4): tiled attention with an online softmax (the FlashAttention recurrence).

Task: ``tiled_attention(q (N, D), k (M, D), v (M, D), block: int) -> (N, D)`` equal to
``softmax(q k^T / sqrt(D)) v`` (no mask) while never holding more than a (N, block) slice of scores:
walk K/V in blocks of ``block`` rows, keep per query row a running max ``m``, running sum ``l`` and an
unnormalised output ``acc``, rescale them by ``exp(m_old - m_new)`` when the max grows, divide by ``l``
at the end. Grade: ``python -m common.grade 9.3``.
"""

from __future__ import annotations

import math

import torch


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int = 64) -> torch.Tensor:
    n, d = q.shape
    q = q / math.sqrt(d)
    m = torch.full((n, 1), float("-inf"), dtype=q.dtype)
    l_sum = torch.zeros(n, 1, dtype=q.dtype)
    acc = torch.zeros(n, v.shape[1], dtype=q.dtype)
    for s in range(0, k.shape[0], block):
        scores = q @ k[s:s + block].T  # (N, block)
        m_new = torch.maximum(m, scores.amax(-1, keepdim=True))
        p = torch.exp(scores - m_new)
        corr = torch.exp(m - m_new)
        l_sum = l_sum * corr + p.sum(-1, keepdim=True)
        acc = acc * corr + p @ v[s:s + block]
        m = m_new
    return acc / l_sum
