"""Exercise 4.2 (book 4.2): compare generation with and without a KV cache.

Task: write ``generate_without_cache(model, prompt_ids, max_new_tokens)``, greedy decoding that re-runs the
model over the whole sequence (prompt + everything generated so far) at every step, and
``compare_with_and_without_cache(model, prompt_ids, max_new_tokens)``, which times it against the cached
loop ``ch04_kvcache.generate.generate(..., cache="contiguous", eos_token_id=None)`` (warm both up first)
and returns a :class:`CacheComparison`: whether the tokens are identical, both wall times, the speedup,
and how many token-positions each ran through the model (no cache: the sum of the growing sequence
lengths; cache: prompt + one per further token). Grade: ``python -m common.grade 4.2``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ch04_kvcache.generate import generate


@dataclass
class CacheComparison:
    tokens_identical: bool
    seconds_without: float
    seconds_with: float
    speedup: float
    positions_without: int
    positions_with: int


@torch.inference_mode()
def generate_without_cache(model, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    ids = list(prompt_ids)
    out: list[int] = []
    while len(out) < max_new_tokens:
        logits = model(torch.tensor([ids], device=model.device))[0, -1]  # the whole sequence, every step
        out.append(int(logits.argmax()))
        ids.append(out[-1])
    return out


def compare_with_and_without_cache(model, prompt_ids: list[int], max_new_tokens: int) -> CacheComparison:
    generate_without_cache(model, prompt_ids, 2)  # warm-up
    generate(model, prompt_ids, 2, cache="contiguous", eos_token_id=None)
    t0 = time.perf_counter()
    without = generate_without_cache(model, prompt_ids, max_new_tokens)
    t1 = time.perf_counter()
    with_cache = generate(model, prompt_ids, max_new_tokens, cache="contiguous", eos_token_id=None).token_ids
    t2 = time.perf_counter()
    p = len(prompt_ids)
    return CacheComparison(without == with_cache, t1 - t0, t2 - t1, (t1 - t0) / (t2 - t1),
                           sum(p + i for i in range(max_new_tokens)), p + max_new_tokens - 1)
