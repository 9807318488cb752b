"""Exercise 9.1 (book 9.1): a top-k router with the Switch Transformer load-balance loss.

Task: ``route(logits (T, E), k) -> (expert_idx (T, k) long, weight (T, k), aux_loss scalar)``: softmax the
router logits, keep each token's k most probable experts, renormalise their probabilities to sum to 1,
and return ``aux_loss = E * sum_e f_e * P_e`` where f_e is the fraction of the T*k assignments that went
to expert e and P_e the mean router probability of e over the T tokens (1.0 when perfectly balanced).
Reject ``k`` outside 1..E with ``ValueError``. Grade: ``python -m common.grade 9.1``.
"""

from __future__ import annotations

import torch


def route(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits (T, E) -> expert_idx (T, k), weight (T, k) summing to 1 per token, aux_loss (scalar)."""
    raise NotImplementedError("exercise 9.1: softmax, top-k, renormalise, then E * sum(f * P)")
