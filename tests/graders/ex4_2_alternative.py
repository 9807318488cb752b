"""Exercise 4.2, a different correct answer: the sequence is a growing tensor, only the last position is
projected to logits, timings use ``perf_counter_ns`` with two warm-up rounds."""

from __future__ import annotations

import time

import torch

from ch04_kvcache import generate as ch04
from ch04_kvcache.solutions.ex4_2_compare_cache import CacheComparison


def generate_without_cache(model, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    seq = torch.tensor([prompt_ids], device=model.device)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            nxt = model(seq, logits_to_keep=1)[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], dim=1)
    return seq[0, len(prompt_ids):].tolist()


def _timed(fn) -> tuple[list[int], float]:
    t0 = time.perf_counter_ns()
    out = fn()
    return out, (time.perf_counter_ns() - t0) / 1e9


def compare_with_and_without_cache(model, prompt_ids: list[int], max_new_tokens: int) -> CacheComparison:
    def cached():
        return ch04.generate(model, prompt_ids, max_new_tokens, cache="contiguous", eos_token_id=None).token_ids

    for _ in range(2):
        generate_without_cache(model, prompt_ids, 1)
        ch04.generate(model, prompt_ids, 1, cache="contiguous", eos_token_id=None)
    with_cache, s_with = _timed(cached)
    without, s_without = _timed(lambda: generate_without_cache(model, prompt_ids, max_new_tokens))
    n, p = max_new_tokens, len(prompt_ids)
    return CacheComparison(with_cache == without, s_without, s_with, s_without / s_with,
                           n * p + n * (n - 1) // 2, p + n - 1)
