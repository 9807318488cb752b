"""Exercise 4.2: the reader's own no-cache loop agrees with the cached one, re-runs the whole sequence at
every step, and is slower by a real margin when the grader times it itself.

The grader does not trust what ``compare_with_and_without_cache`` reports: it watches every call of the
model (a forward pre-hook records each call's input length and whether a cache was passed), makes ch04's
own ``generate`` / ``NoCacheStepper`` raise while the reader's ``generate_without_cache`` runs (so it cannot
delegate), and times the reader's loop against the cached one. The timing runs on a random model wider than
``tiny_model`` (hidden 128, 384-token prompt): on the 64-wide tiny model a whole 256-token forward costs
about what one cached step's Python overhead does, so the quadratic cost would not show; here the reference
is 4-17x faster with the cache (2-core EPYC shared with other jobs, 2026-12-03), far from the 1.5x the
grader asks. Everything runs on one torch thread (conftest's ``one_torch_thread``): on a busy machine two threads wait on each other in every
small op, which slows the cached loop's many tiny steps far more than the no-cache loop's big ones (measured
1.2x with two threads, against 4x or more with one).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest
import torch

import ch04_kvcache.generate as ch04_generate
from ch04_kvcache.config import ModelConfig
from ch04_kvcache.model import LlamaModel

MIN_SPEEDUP = 1.5
TIMED_PROMPT, TIMED_NEW = 384, 16

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_wide_model() -> LlamaModel:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_layers=2, num_heads=4,
                      num_kv_heads=2, head_dim=32, max_position_embeddings=1024, tie_word_embeddings=True)
    return LlamaModel(cfg).eval()


@pytest.fixture(scope="module")
def wide_model() -> LlamaModel:
    return make_wide_model()


def reference_tokens(model, prompt: list[int], n: int) -> list[int]:
    return ch04_generate.generate(model, prompt, n, cache="contiguous", eos_token_id=None).token_ids


@contextmanager
def watch_calls(model):
    """Yields a list that gets ``(input length, cache passed?)`` for every ``model(...)`` call."""
    calls: list[tuple[int, bool]] = []

    def hook(_module, args, kwargs):
        ids = args[0] if args else kwargs["input_ids"]
        cache = kwargs.get("cache", args[2] if len(args) > 2 else None)
        calls.append((int(ids.shape[-1]), cache is not None))

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


@contextmanager
def no_delegation(mod):
    """ch04's own loops raise while the reader's no-cache loop runs (also names the reader imported)."""
    def refuse(*_a, **_k):
        raise AssertionError("generate_without_cache must run its own loop, not ch04_kvcache.generate's")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ch04_generate, "generate", refuse)
        mp.setattr(ch04_generate.NoCacheStepper, "step", refuse)
        for name, value in vars(mod).items():
            if value is ch04_generate.generate:
                mp.setattr(mod, name, refuse)
        yield


def check_own_loop(mod, model, prompt: list[int], n: int) -> None:
    expected = reference_tokens(model, prompt, n)
    with no_delegation(mod), watch_calls(model) as calls:
        got = mod.generate_without_cache(model, prompt, n)
    assert got == expected, "the no-cache loop must give the cached loop's greedy tokens"
    assert not any(cached for _, cached in calls), "the no-cache loop passed a KV cache to the model"
    assert [length for length, _ in calls] == [len(prompt) + i for i in range(n)], (
        "call the model once per new token, on the whole sequence so far (prompt + generated): "
        f"saw input lengths {[length for length, _ in calls]}")


def test_generate_without_cache_runs_its_own_loop_over_the_whole_sequence(exercise, tiny_model):
    mod = exercise("ch04_kvcache", "ex4_2_compare_cache")
    model, _ = tiny_model
    check_own_loop(mod, model, [9, 8, 7, 6, 5], 12)


def best_of(fn, repeats: int = 2) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def check_comparison(mod, model) -> None:
    prompt = [3 + (7 * i) % 250 for i in range(TIMED_PROMPT)]
    n, p = TIMED_NEW, TIMED_PROMPT
    with watch_calls(model) as calls:
        t0 = time.perf_counter()
        res = mod.compare_with_and_without_cache(model, prompt, n)
        wall = time.perf_counter() - t0
    assert res.tokens_identical is True
    assert res.positions_without == sum(p + i for i in range(n))
    assert res.positions_with == p + n - 1
    assert sum(length for length, _ in calls) >= res.positions_without + res.positions_with, (
        "the comparison must run both loops on the model")
    assert res.seconds_without > 0 and res.seconds_with > 0
    assert res.seconds_without + res.seconds_with <= wall, "reported times exceed the call's own wall time"
    assert res.speedup == pytest.approx(res.seconds_without / res.seconds_with, rel=1e-6)
    assert res.speedup > 1.0, f"your comparison measured no speed-up ({res.speedup:.2f}x)"
    # the grader's own measurement of the reader's loop against the cached one (both warm from above)
    without = best_of(lambda: mod.generate_without_cache(model, prompt, n))
    cached = best_of(lambda: reference_tokens(model, prompt, n))
    assert without / cached > MIN_SPEEDUP, (
        f"your no-cache loop took {without * 1e3:.0f} ms and the cached loop {cached * 1e3:.0f} ms "
        f"({without / cached:.2f}x); re-running the whole sequence should cost more than {MIN_SPEEDUP}x")


def test_comparison_is_measured_and_the_cache_really_pays(exercise, wide_model):
    check_comparison(exercise("ch04_kvcache", "ex4_2_compare_cache"), wide_model)
