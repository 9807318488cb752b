"""Exercise 4.1: a simple concatenating KV cache gives the no-cache tokens and grows by one per step."""

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
    mod = exercise("ch04_kvcache", "ex4_1_simple_kv_cache")
    model, _ = tiny_model
    cache = mod.SimpleKVCache(model.config.num_layers)
    assert cache.length == 0
    with torch.no_grad():
        full = model(torch.tensor([[4, 8, 15, 16, 23]]))
        model(torch.tensor([[4, 8, 15, 16]]), cache=cache)
        last = model(torch.tensor([[23]]), cache=cache)
    assert cache.length == 5
    torch.testing.assert_close(last[0, -1], full[0, -1], atol=1e-4, rtol=1e-4)
