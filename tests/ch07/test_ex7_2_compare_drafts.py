"""Exercise 7.2: compare drafts by measured acceptance and cost; the formula picks the sensible one."""

from __future__ import annotations

from ch04_kvcache.model import LlamaModel
from ch07_speculative.drafts import truncated_draft


def test_compare_drafts_measures_and_chooses(exercise, tiny_hf_model):
    mod = exercise("ch07_speculative", "ex7_2_compare_drafts")
    target = LlamaModel.from_pretrained(tiny_hf_model[1])
    drafts = {"itself": target, "first layer": truncated_draft(target, 1)}
    reps = mod.compare_drafts(target, drafts, [1, 17, 42, 99], max_new_tokens=12, gamma=3)
    assert [r.name for r in reps] == ["itself", "first layer"]
    same = reps[0]
    assert same.acceptance_rate == 1.0 and same.tokens_per_target_step == 4.0
    assert all(r.c > 0 for r in reps)
    assert all(r.predicted_speedup > 0 for r in reps)
    fake = [mod.DraftReport("a", 0.9, 3.0, 0.5, 1.2), mod.DraftReport("b", 0.6, 2.0, 0.05, 1.9)]
    assert mod.choose(fake) == "b"
