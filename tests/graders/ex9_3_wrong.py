"""Exercise 9.3, plausible but wrong: the numbers are right, but the whole (N, M) score matrix is computed
first and only the softmax statistics are then walked block by block."""

import math

import torch


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int = 64) -> torch.Tensor:
    scores = q @ k.T / math.sqrt(q.shape[1])  # (N, M): what tiling is meant to avoid
    m = scores.amax(-1, keepdim=True)
    out = torch.zeros(q.shape[0], v.shape[1])
    total = torch.zeros(q.shape[0], 1)
    for s in range(0, k.shape[0], block):
        p = torch.exp(scores[:, s:s + block] - m)
        total += p.sum(-1, keepdim=True)
        out += p @ v[s:s + block]
    return out / total
