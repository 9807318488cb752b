"""Exercise 4.2, plausible but wrong: delegates the no-cache loop to ch04's own ``generate(cache="none")``
and reports the comparison without timing anything of its own (speed-up 1)."""

from __future__ import annotations

import time

from ch04_kvcache.generate import generate
from ch04_kvcache.solutions.ex4_2_compare_cache import CacheComparison


def generate_without_cache(model, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    return generate(model, prompt_ids, max_new_tokens, cache="none", eos_token_id=None).token_ids


def compare_with_and_without_cache(model, prompt_ids: list[int], max_new_tokens: int) -> CacheComparison:
    t0 = time.perf_counter()
    tokens = generate_without_cache(model, prompt_ids, max_new_tokens)
    dt = time.perf_counter() - t0
    p = len(prompt_ids)
    return CacheComparison(True, dt, dt, 1.0, sum(p + i for i in range(max_new_tokens)) if tokens else 0,
                           p + max_new_tokens - 1)
