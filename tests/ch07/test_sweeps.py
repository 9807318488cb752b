"""The 7.5 sweeps: each point keeps the target's tokens, and the batch sweep measures a real verify cost."""

from __future__ import annotations

from ch07_speculative.prompt_lookup import PromptLookupDrafter
from ch07_speculative.sweeps import baseline, run_point, sweep_batch, verify_cost


def test_a_sweep_point_is_exact_and_reports_the_formula_beside_the_measurement(embedded_llama, chat_prompt_ids):
    ref, base_s = baseline(embedded_llama, chat_prompt_ids, 6)
    row = run_point(embedded_llama, PromptLookupDrafter(), chat_prompt_ids, 6, 4, base_s, c=0.0)
    assert row["tokens"] == ref.token_ids
    assert row["speedup"] > 0 and 1.0 <= row["tokens_per_target_step"] <= 5.0
    assert row["formula_speedup"] >= 1.0  # c = 0: the formula never predicts a loss


def test_verify_cost_is_measured_per_batch(embedded_llama):
    vx = verify_cost(embedded_llama, batch=2, gamma=3, context=16, repeats=1)
    assert vx > 0
    rows = sweep_batch(embedded_llama, alpha=0.8, gamma=3, c=0.1, batches=[1, 2], context=16)
    assert [r["batch"] for r in rows] == [1, 2]
    assert all(r["formula_speedup_measured_verify"] > 0 for r in rows)
