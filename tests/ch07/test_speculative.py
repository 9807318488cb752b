"""7.2 / 7.3.1: speculative sampling is exact: identical greedy tokens, and the target's distribution."""

from __future__ import annotations

import pytest
import torch

from ch04_kvcache.generate import generate
from ch04_kvcache.model import LlamaModel
from ch07_speculative.drafts import truncated_draft
from ch07_speculative.speculative import Draft, ModelDrafter, speculative_generate, verify
from ch07_speculative.stats import chi_square_p, distribution_test, exact_first_two_marginals, sharpen_pair


def _peaky_pair(folder):
    return sharpen_pair(LlamaModel.from_pretrained(folder), LlamaModel.from_pretrained(folder))


@pytest.mark.slow
def test_greedy_speculation_gives_the_target_tokens_on_the_embedded_model(embedded_llama, chat_prompt_ids):
    ref = generate(embedded_llama, chat_prompt_ids, 10, cache="contiguous")
    res = speculative_generate(embedded_llama, ModelDrafter(truncated_draft(embedded_llama, 20)),
                               chat_prompt_ids, 10, gamma=3)
    assert res.token_ids == ref.token_ids
    assert res.stats.rounds <= 10 and res.stats.drafted > 0


def test_draft_equal_to_target_accepts_everything(tiny_hf_model):
    model = LlamaModel.from_pretrained(tiny_hf_model[1])
    prompt = [1, 17, 42, 99]
    ref = generate(model, prompt, 12, cache="contiguous", eos_token_id=None)
    res = speculative_generate(model, ModelDrafter(model), prompt, 12, gamma=3, eos_token_id=None)
    assert res.token_ids == ref.token_ids
    assert res.stats.acceptance_rate == 1.0
    assert res.stats.tokens_per_target_step == 4.0  # gamma + 1: the formula at alpha = 1
    assert res.stats.rounds == 3  # 12 tokens = 3 rounds of 3 accepted drafts + 1 bonus token


def test_sampled_tokens_follow_the_target_distribution(tiny_hf_model):
    target, draft = _peaky_pair(tiny_hf_model[1])
    res = distribution_test(target, draft, [1, 17, 42, 99], samples=500)
    assert 0.05 < res["acceptance_rate"] < 0.95  # the draft really differs, so rejections are exercised
    assert res["p_first"] > 0.01
    assert res["p_second"] > 0.01


def test_chi_square_rejects_the_draft_distribution(tiny_hf_model):
    """The test has power: samples from the draft alone fail it against the target's distribution."""
    target, draft = _peaky_pair(tiny_hf_model[1])
    prompt = [1, 17, 42, 99]
    p1, _ = exact_first_two_marginals(target, prompt)
    q1, _ = exact_first_two_marginals(draft, prompt)
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.multinomial(q1, 600, replacement=True, generator=g), minlength=256).float()
    assert chi_square_p(counts, p1) < 0.01


def test_verify_resamples_from_the_residual():
    """Draft proposes token 0 with q=1 where p(0)=0.25: accepted 25% of the time, else token 1 or 2."""
    logits = torch.log(torch.tensor([[0.25, 0.5, 0.25], [1 / 3, 1 / 3, 1 / 3]]))
    draft = Draft([0], torch.tensor([[1.0, 0.0, 0.0]]))
    g = torch.Generator().manual_seed(0)
    outcomes = [verify(logits, draft, 1.0, g) for _ in range(4000)]
    acc = sum(n for n, _ in outcomes) / len(outcomes)
    assert abs(acc - 0.25) < 0.03
    rejected = [t for n, t in outcomes if n == 0]
    assert set(rejected) <= {1, 2}
    assert abs(rejected.count(1) / len(rejected) - 2 / 3) < 0.04  # residual (0, .5, .25) normalised


def test_quantized_drafts_keep_greedy_output_exact(tiny_hf_model):
    from ch06_quantization.cpu_gemv import gemv_problem
    from ch07_speculative.drafts import dynamic_int8_draft, gemv_int8_draft, quantized_draft

    model = LlamaModel.from_pretrained(tiny_hf_model[1])
    prompt = [1, 17, 42, 99]
    ref = generate(model, prompt, 10, cache="contiguous", eos_token_id=None)
    drafts = [quantized_draft(model, 8), quantized_draft(model, 4), dynamic_int8_draft(model)]
    if gemv_problem() is None:
        drafts.append(gemv_int8_draft(model))
    for draft in drafts:
        res = speculative_generate(model, ModelDrafter(draft), prompt, 10, gamma=3, eos_token_id=None)
        assert res.token_ids == ref.token_ids
        assert res.stats.acceptance_rate > 0.5  # the quantized target mostly agrees with itself


def test_shared_cache_drafts_keep_greedy_output_exact(tiny_hf_model):
    """Drafts made from the target read and restore the target's own KV cache; the output does not change."""
    import copy

    from ch06_quantization.cpu_decode import FusedDecoder, fused_decode_problem
    from ch07_speculative.drafts import fused_int4_draft, gemv_int8_draft
    from ch07_speculative.speculative import SharedCacheDrafter

    model = LlamaModel.from_pretrained(tiny_hf_model[1])
    prompt = [1, 17, 42, 99, 5, 6]
    ref = generate(model, prompt, 12, cache="contiguous", eos_token_id=None)
    drafts = {"first block": truncated_draft(model, 1), "itself": copy.deepcopy(model)}
    if fused_decode_problem() is None:
        drafts["fused int8"] = FusedDecoder(gemv_int8_draft(model))
        drafts["fused int4 g64"] = fused_int4_draft(model)  # ch06's packed-weight kernel, LM head int4 too
    for name, draft in drafts.items():
        res = speculative_generate(model, SharedCacheDrafter(draft), prompt, 12, gamma=3, eos_token_id=None)
        assert res.token_ids == ref.token_ids, name
        if name != "first block":
            assert res.stats.acceptance_rate > 0.5, name  # the draft reads exactly the K/V it would have written
    assert speculative_generate(model, SharedCacheDrafter(drafts["itself"]), prompt, 12, gamma=3,
                                eos_token_id=None).stats.acceptance_rate == 1.0


def test_shared_cache_sampling_follows_the_target_distribution(tiny_hf_model):
    from ch07_speculative.speculative import SharedCacheDrafter

    target, draft = _peaky_pair(tiny_hf_model[1])
    res = distribution_test(target, draft, [1, 17, 42, 99], samples=400, drafter=SharedCacheDrafter)
    assert 0.05 < res["acceptance_rate"] < 0.95
    assert res["p_first"] > 0.01 and res["p_second"] > 0.01


def test_shared_cache_refuses_a_deeper_draft(tiny_hf_model):
    from ch07_speculative.speculative import SharedCacheDrafter

    model = LlamaModel.from_pretrained(tiny_hf_model[1])
    shallow = truncated_draft(model, 1)
    with pytest.raises(ValueError, match="at most its number of layers"):
        speculative_generate(shallow, SharedCacheDrafter(model), [1, 17, 42], 4, gamma=2)
