"""Every chapter's 常见误区 (pitfalls) in smoke mode, in-process: the measured consequence points the way
the pitfall claims (a ratio above 1, a share above 0...). Timings are never compared to a number a
loaded machine could miss; only directions a pitfall rests on."""

from __future__ import annotations

import pytest

from common.pitfalls import Pitfall, pitfall_rows, pitfalls_payload


def _by_title(pitfalls: list[Pitfall]) -> dict[str, dict]:
    assert pitfalls and all(p.belief and p.consequence for p in pitfalls)
    assert len(pitfall_rows(pitfalls)) == len(pitfalls)
    payload = pitfalls_payload("x.pitfalls", pitfalls)
    assert [p["title"] for p in payload["pitfalls"]] == [p.title for p in pitfalls]
    return {p.title: p.measured for p in pitfalls}


def test_ch02_pitfalls(tiny_hf_model):
    from ch02_gpu import pitfalls

    # the decode pitfalls on a tiny random Llama (same code path, same fp32 intensity) to save a model load
    m = list(_by_title(pitfalls.run(True, model=tiny_hf_model[0])).values())
    gqa, decode, busy = m
    assert gqa["smollm2_overstatement"] == pytest.approx(3.0)
    assert gqa["llama3_8b_overstatement"] == pytest.approx(4.0)
    assert gqa["vllm_cpu_1gib_tokens"] == 23_296 and gqa["vllm_cpu_1gib_tokens_naive"] < 23_296 / 2.9
    assert decode["intensity_flop_per_byte"] < 1 and decode["mbu_batch1"] > decode["mfu_batch1"]
    assert busy["recurrence_share_of_peak"] < 0.01


def test_ch04_pitfalls():
    from ch04_kvcache import pitfalls

    contiguous, blocks, kv = _by_title(pitfalls.run(True)).values()
    assert contiguous["naive_waste_share"] > 0.5 > contiguous["paged_waste_share"]
    assert contiguous["paged_vs_naive_sequences"] > 1
    assert blocks["paged_util_big"] < blocks["paged_util_small"]
    assert kv["smollm2_kv_over_weights"] > 1 and kv["llama3_8b_kv_over_weights"] > 1


def test_ch05_pitfalls():
    from ch05_scheduling import pitfalls

    static, big = _by_title(pitfalls.run(True)).values()
    assert static["static_idle_share"] > static["continuous_idle_share"]
    assert static["continuous_vs_static_tok_s"] > 1
    assert big["tpot_p90_ratio_128_vs_32"] > 1 and big["tok_s_gain_128_vs_32"] < big["tpot_p90_ratio_128_vs_32"]


@pytest.fixture(scope="module")
def embedded_llama(embedded_model_dir):
    """ch04's LlamaModel with the embedded weights, shared by the ch06, ch07 and ch09 pitfalls."""
    from ch04_kvcache.model import LlamaModel

    return LlamaModel.from_pretrained(embedded_model_dir)


def test_ch06_pitfalls(embedded_llama, embedded_tokenizer):
    from ch06_quantization import pitfalls

    granularity, faster = _by_title(pitfalls.run(True, model=embedded_llama, tokenizer=embedded_tokenizer)).values()
    assert granularity["ppl_ratio_per_tensor"] > 10 * granularity["ppl_ratio_group32"]
    assert faster["int4_smaller_by"] > 2.5  # the bytes shrink; the speed is printed, not asserted


def test_ch07_pitfalls(embedded_llama, embedded_tokenizer):
    from ch07_speculative import pitfalls

    poor, lookup = _by_title(pitfalls.run(True, model=embedded_llama, tokenizer=embedded_tokenizer)).values()
    assert poor["acceptance_rate"] < 0.5 and poor["speedup_bound"] < 1
    assert lookup["acceptance_free"] < lookup["acceptance_rewrite"]
    assert lookup["tokens_per_step_free"] < lookup["tokens_per_step_rewrite"]
