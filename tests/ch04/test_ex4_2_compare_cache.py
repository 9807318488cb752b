"""Exercise 4.2: the no-cache loop agrees with the cached one and does quadratically more work."""

from __future__ import annotations

from ch04_kvcache.generate import generate


def test_generate_without_cache_matches_the_chapter_loop(exercise, tiny_model):
    mod = exercise("ch04_kvcache", "ex4_2_compare_cache")
    model, _ = tiny_model
    prompt = [9, 8, 7, 6, 5]
    assert mod.generate_without_cache(model, prompt, 12) == generate(model, prompt, 12, cache="none",
                                                                      eos_token_id=None).token_ids


def test_comparison_reports_identical_tokens_times_and_work(exercise, tiny_model):
    mod = exercise("ch04_kvcache", "ex4_2_compare_cache")
    model, _ = tiny_model
    res = mod.compare_with_and_without_cache(model, [1, 2, 3, 4, 5, 6, 7, 8], 10)
    assert res.tokens_identical is True
    assert res.seconds_without > 0 and res.seconds_with > 0
    assert abs(res.speedup - res.seconds_without / res.seconds_with) < 1e-9
    assert res.positions_without == sum(8 + i for i in range(10))  # 8 + 9 + ... + 17
    assert res.positions_with == 8 + 9
