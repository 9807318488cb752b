"""Exercise 4.1: a simple concatenating KV cache gives the no-cache tokens, grows by one per step, and every
decode step's logits equal a full forward over the whole sequence."""

from __future__ import annotations

import torch

from ch04_kvcache.generate import generate


def test_simple_cache_tokens_equal_no_cache_tokens(exercise, tiny_model):
    mod = exercise("ch04_kvcache", "ex4_1_simple_kv_cache")
    model, _ = tiny_model
    prompt = [5, 17, 42, 7, 99, 3, 64]
    ref = generate(model, prompt, 20, cache="none", eos_token_id=None).token_ids
    assert mod.generate_with_simple_cache(model, prompt, 20) == ref


def test_simple_cache_holds_every_token_and_returns_full_kv(exercise, tiny_model):
    check_cache_logits(exercise("ch04_kvcache", "ex4_1_simple_kv_cache"), tiny_model[0])


def check_cache_logits(mod, model) -> None:
    """A 4-token prompt, then 3 one-token steps: each step's logits equal a full forward over the sequence
    so far (a cache that forgets old tokens goes wrong from the second step on)."""
    seq = [4, 8, 15, 16, 23, 42, 7]
    cache = mod.SimpleKVCache(model.config.num_layers)
    assert cache.length == 0
    with torch.no_grad():
        model(torch.tensor([seq[:4]]), cache=cache)
        for n in range(5, len(seq) + 1):
            last = model(torch.tensor([[seq[n - 1]]]), cache=cache)
            assert cache.length == n
            full = model(torch.tensor([seq[:n]]))
            torch.testing.assert_close(last[0, -1], full[0, -1], atol=1e-4, rtol=1e-4,
                                       msg=lambda m, n=n: f"decode step with {n} tokens: {m}")
