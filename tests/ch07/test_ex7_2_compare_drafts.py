"""Exercise 7.2: compare drafts by measured acceptance and cost; the formula picks the sensible one.

No timing is asserted (the cost ratio ``c`` is measured and noisy); what is checked: the acceptance rate and
tokens per target step are the ones the grader's own greedy speculative run measures for each draft (the
target drafting for itself accepts everything), and each predicted speedup is the book's formula applied to
the report's own rate and ``c`` (alpha from the acceptance rate, not the rate itself).
"""

from __future__ import annotations

import pytest
import torch

from ch04_kvcache.config import ModelConfig
from ch04_kvcache.model import LlamaModel
from ch07_speculative import theory
from ch07_speculative.drafts import truncated_draft
from ch07_speculative.speculative import ModelDrafter, speculative_generate

PROMPT, N, GAMMA = [1, 17, 42, 99], 12, 3


def make_target() -> LlamaModel:
    """A seeded random 2-layer model with an untied LM head: its first layer as a draft accepts about half
    the drafted tokens (a tied random model's greedy text repeats one token and every draft accepts it all)."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_layers=2, num_heads=4,
                      num_kv_heads=2, head_dim=32, max_position_embeddings=1024, tie_word_embeddings=False)
    return LlamaModel(cfg).eval()


def check_reports(mod, target) -> None:
    drafts = {"itself": target, "first layer": truncated_draft(target, 1)}
    reps = mod.compare_drafts(target, drafts, PROMPT, max_new_tokens=N, gamma=GAMMA)
    assert [r.name for r in reps] == ["itself", "first layer"]
    same = reps[0]
    assert same.acceptance_rate == 1.0 and same.tokens_per_target_step == GAMMA + 1
    assert 0 < reps[1].acceptance_rate < 1, "the grader's draft should accept some tokens, not all"
    for rep, draft in zip(reps, drafts.values(), strict=True):
        stats = speculative_generate(target, ModelDrafter(draft), PROMPT, N, GAMMA, eos_token_id=None).stats
        rate = stats.acceptance_rate if stats.drafted else 0.0
        assert rep.acceptance_rate == pytest.approx(rate), f"{rep.name}: not the measured acceptance rate"
        assert rep.tokens_per_target_step == pytest.approx(stats.tokens_per_target_step)
        assert rep.c > 0
        want = theory.speedup(theory.alpha_from_acceptance_rate(rep.acceptance_rate, GAMMA), GAMMA, rep.c)
        assert rep.predicted_speedup == pytest.approx(want, rel=1e-6), f"{rep.name}: not the formula's speedup"


def check_choose(mod) -> None:
    fake = [mod.DraftReport("a", 0.9, 3.0, 0.5, 1.2), mod.DraftReport("b", 0.6, 2.0, 0.05, 1.9),
            mod.DraftReport("c", 0.7, 2.5, 0.1, 1.5)]
    assert mod.choose(fake) == "b"
    assert mod.choose(fake[:1] + fake[2:]) == "c"


def test_compare_drafts_measures_and_chooses(exercise):
    mod = exercise("ch07_speculative", "ex7_2_compare_drafts")
    check_reports(mod, make_target())
    check_choose(mod)
