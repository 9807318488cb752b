"""Exercise 9.3, a different correct answer: a running log-sum-exp instead of (max, sum), scores kept as
(block, N) tiles (keys along rows), and the output renormalised at every step instead of at the end."""

import math

import torch


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int = 64) -> torch.Tensor:
    lse = torch.full((1, q.shape[0]), -math.inf)  # log sum exp of the scores seen so far, per query
    out = torch.zeros(q.shape[0], v.shape[1])  # normalised output over the keys seen so far
    for kb, vb in zip(k.split(block), v.split(block), strict=True):
        s_t = (kb @ q.T) * (1.0 / math.sqrt(q.shape[1]))  # (block, N)
        lse_new = torch.logaddexp(lse, torch.logsumexp(s_t, dim=0, keepdim=True))
        out = out * torch.exp(lse - lse_new).T + torch.exp(s_t - lse_new).T @ vb
        lse = lse_new
    return out
