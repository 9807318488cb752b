"""Exercise 7.1: the accept/resample step keeps the target's distribution exactly."""

from __future__ import annotations

import torch


def test_identical_distributions_accept_everything(exercise):
    mod = exercise("ch07_speculative", "ex7_1_speculative_step")
    p = torch.softmax(torch.randn(4, 10, generator=torch.Generator().manual_seed(0)), -1)
    out = mod.accept_or_resample(p, p[:3], [1, 2, 3], torch.Generator().manual_seed(0))
    assert out[:3] == [1, 2, 3] and len(out) == 4


def test_first_token_follows_the_target_distribution(exercise):
    """Monte Carlo: with a very different draft, the first emitted token is still distributed as p_0."""
    check_first_token_distribution(exercise("ch07_speculative", "ex7_1_speculative_step"))


def check_first_token_distribution(mod, n: int = 6000, atol: float = 0.025) -> None:
    p = torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.25, 0.25, 0.25, 0.25]])
    q = torch.tensor([[0.1, 0.1, 0.2, 0.6]])
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(4)
    for _ in range(n):
        draft = [int(torch.multinomial(q[0], 1, generator=g))]
        counts[mod.accept_or_resample(p, q, draft, g)[0]] += 1
    assert torch.allclose(counts / n, p[0], atol=atol), (counts / n).tolist()
    assert counts[3] == 0  # impossible under the target: never emitted, even though the draft loves it
