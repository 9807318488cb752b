"""Perplexity through a cache equals perplexity without one; agreement counts common prefixes."""

from __future__ import annotations

import math

import pytest

from ch04_kvcache.kv_cache import ContiguousKVCache
from ch04_kvcache.quality import greedy_agreement, perplexity


def test_perplexity_is_the_same_with_and_without_a_cache(tiny_model):
    model, _ = tiny_model
    ids = [(7 * i) % 250 + 3 for i in range(70)]
    plain = perplexity(model, ids, window=32)
    cached = perplexity(model, ids, window=32,
                        cache_factory=lambda m, n: ContiguousKVCache(m.config, 1, n))
    assert plain.tokens_scored == 31 + 31 + 5 and plain.windows == 3
    assert cached.ppl == pytest.approx(plain.ppl, rel=1e-5)
    assert 1 < plain.ppl < 10 * 256 and math.isfinite(plain.ppl)


def test_greedy_agreement_measures_common_prefix():
    a = greedy_agreement([[1, 2, 3, 4], [5, 6]], [[1, 2, 9, 4], [5, 6]])
    assert a.identical == 1 and a.prompts == 2
    assert a.mean_prefix_fraction == pytest.approx((2 / 4 + 1) / 2)
