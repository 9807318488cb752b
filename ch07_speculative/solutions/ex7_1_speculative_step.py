"""Exercise 7.1 (book 7.2, 7.3.1): accelerate generation with speculative sampling -- the verification step.

Task: implement :func:`accept_or_resample`. Given the target's probabilities ``p`` (k+1, V) at the k draft
positions plus one more, the draft's probabilities ``q`` (k, V) and the drafted tokens (k,), walk the draft:
accept token x_i with probability min(1, p_i(x_i) / q_i(x_i)) (draw ``u = torch.rand(1, generator=g)``);
at the first rejection return the accepted tokens plus one token sampled from normalise(max(0, p_i - q_i));
if all are accepted, return them plus one token sampled from p_k. The result: between 1 and k+1 tokens,
distributed exactly as the target would sample them. Plug it into ``ch07_speculative.speculative`` to
see it work end to end. Grade with ``python -m common.grade 7.1``.
"""

from __future__ import annotations

import torch


def accept_or_resample(p: torch.Tensor, q: torch.Tensor, tokens: list[int],
                       generator: torch.Generator | None = None) -> list[int]:
    """Tokens this round emits: the accepted draft prefix plus one corrected or bonus token."""
    out: list[int] = []
    for i, x in enumerate(tokens):
        u = float(torch.rand(1, generator=generator))
        if u < min(1.0, float(p[i, x]) / float(q[i, x])):
            out.append(x)
            continue
        residual = (p[i] - q[i]).clamp_min(0.0)  # (V,)
        if float(residual.sum()) <= 0:
            residual = p[i]
        out.append(int(torch.multinomial(residual / residual.sum(), 1, generator=generator)))
        return out
    out.append(int(torch.multinomial(p[len(tokens)], 1, generator=generator)))
    return out
