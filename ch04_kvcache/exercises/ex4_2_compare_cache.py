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

from dataclasses import dataclass


@dataclass
class CacheComparison:
    tokens_identical: bool
    seconds_without: float
    seconds_with: float
    speedup: float
    positions_without: int
    positions_with: int


def generate_without_cache(model, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    raise NotImplementedError("exercise 4.2: re-run the model over the whole sequence at every step")


def compare_with_and_without_cache(model, prompt_ids: list[int], max_new_tokens: int) -> CacheComparison:
    raise NotImplementedError("exercise 4.2: time both loops and fill in a CacheComparison")
