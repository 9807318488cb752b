"""Prompt lookup (7.3.2) and lookahead decoding (7.3.3): greedy output identical to the target alone."""

from __future__ import annotations

import pytest

from ch04_kvcache.generate import generate
from ch04_kvcache.model import LlamaModel
from ch07_speculative.lookahead import NgramPool, lookahead_generate
from ch07_speculative.prompt_lookup import PromptLookupDrafter, find_continuation
from ch07_speculative.speculative import speculative_generate


def test_find_continuation_prefers_the_longest_most_recent_match():
    seq = [5, 6, 7, 8, 1, 6, 7, 9, 2, 6, 7]
    assert find_continuation(seq, 2, max_ngram=2) == [9, 2]  # "6 7" last seen before "9 2"
    assert find_continuation(seq, 3, max_ngram=3) == [9, 2, 6]
    assert find_continuation([1, 2, 3], 4) == []  # no earlier occurrence of anything


def test_ngram_pool_keeps_recent_grams_per_key():
    pool = NgramPool(n=3, per_key=2)
    for g in ([1, 2, 3], [1, 4, 5], [1, 6, 7], [1, 4, 5]):
        pool.add(g)
    assert pool.lookup(1) == [4, 5]
    assert len(pool.table[1]) == 2 and pool.lookup(9) == []


@pytest.mark.parametrize("gamma", [1, 4])
def test_prompt_lookup_matches_greedy_target_on_a_tiny_model(tiny_hf_model, gamma):
    model = LlamaModel.from_pretrained(tiny_hf_model[1])
    prompt = [1, 17, 42, 99, 17, 42, 7, 17, 42]
    ref = generate(model, prompt, 20, cache="contiguous", eos_token_id=None)
    res = speculative_generate(model, PromptLookupDrafter(), prompt, 20, gamma=gamma, eos_token_id=None)
    assert res.token_ids == ref.token_ids
    assert res.stats.drafted > 0


@pytest.mark.parametrize("window", [1, 3])
def test_lookahead_matches_greedy_target_on_a_tiny_model(tiny_hf_model, window):
    model = LlamaModel.from_pretrained(tiny_hf_model[1])
    prompt = [1, 17, 42, 99, 5]
    ref = generate(model, prompt, 24, cache="contiguous", eos_token_id=None)
    res = lookahead_generate(model, prompt, 24, window=window, ngram=3, eos_token_id=None)
    assert res.token_ids == ref.token_ids
    assert res.stats.tokens_per_target_step >= 1.0


@pytest.mark.slow
def test_prompt_lookup_copies_a_paragraph_with_the_embedded_model(embedded_llama, embedded_tokenizer):
    from ch07_speculative.prompt_lookup import REWRITE_PROMPT
    from common.chat import chat_ids

    ids = chat_ids(embedded_tokenizer, REWRITE_PROMPT)
    ref = generate(embedded_llama, ids, 12, cache="contiguous")
    res = speculative_generate(embedded_llama, PromptLookupDrafter(), ids, 12, gamma=6)
    la = lookahead_generate(embedded_llama, ids, 12, window=4)
    assert res.token_ids == ref.token_ids and la.token_ids == ref.token_ids
    assert res.stats.tokens_per_target_step > 2  # the answer copies the input: most drafts are accepted
