"""The chapter benchmark: lockstep runs agree across caches, and ``compare --smoke`` emits every key."""

from __future__ import annotations

import pytest

from ch04_kvcache.no_cache_vs_cache import lockstep
from common.report import parse_json_line

ISSUE_KEYS = ("tokens_identical", "speedup_kv_cache", "paged_kv_utilization", "naive_kv_utilization",
              "paged_vs_contiguous_decode", "int8_kv_ppl_delta_pct", "logits_max_abs_diff_vs_transformers")


def test_lockstep_gives_identical_tokens_and_one_time_per_step(tiny_model):
    model, _ = tiny_model
    traces = lockstep(model, [4, 5, 6, 7, 8], 12, ("none", "contiguous", "paged"))
    assert traces["none"].tokens == traces["contiguous"].tokens == traces["paged"].tokens
    assert all(len(t.seconds) == 12 and t.decode_tokens_per_s() > 0 for t in traces.values())


@pytest.mark.slow
def test_compare_smoke_ends_with_the_issue_keys(capsys):
    from ch04_kvcache.compare import main

    assert main(["--smoke", "--json"]) == 0
    out = parse_json_line(capsys.readouterr().out)
    assert set(ISSUE_KEYS) <= set(out) and "hardware" in out
    assert out["tokens_identical"] is True
    assert out["logits_max_abs_diff_vs_transformers"] <= 1e-4
    assert 0 < out["naive_kv_utilization"] < out["paged_kv_utilization"] <= 1


@pytest.mark.slow
def test_headline_smoke_states_measured_figures():
    from ch04_kvcache.headline import headline

    h = headline(smoke=True)
    assert h.chapter == "ch04" and h.figures["tokens_identical"] is True
    assert f"{h.figures['speedup_kv_cache']:.1f}x" in h.text
    assert h.figures["paged_kv_utilization"] > h.figures["naive_kv_utilization"]
