"""Exercise 2.1: memory needs of several models (graded with ``make grade EX=2.1``)."""

from __future__ import annotations

import pytest

from ch02_gpu.memory import Arch, count_params, kv_bytes_per_token
from common.presets import get_preset, preset_names


@pytest.fixture
def ex(exercise):
    return exercise("ch02_gpu", "ex2_1_memory_needs")


def test_llama3_8b_bf16_at_128k_context(ex):
    out = ex.memory_needs(get_preset("llama-3-8b"), bytes_per_param=2, kv_bytes=2, batch=1, context=131072)
    assert out["params"] == 8_030_261_248
    assert out["kv_bytes_per_token"] == 131_072
    assert out["kv_cache_bytes"] == 17_179_869_184
    assert out["total_bytes"] == out["weights_bytes"] + out["kv_cache_bytes"]


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_agrees_with_the_chapter_calculator(ex, name):
    cfg = get_preset(name)
    a = Arch.from_config(cfg, name)
    out = ex.memory_needs(cfg, bytes_per_param=1, kv_bytes=1, batch=3, context=100)
    assert out["params"] == count_params(a).total
    assert out["weights_bytes"] == count_params(a).total
    assert out["kv_bytes_per_token"] == kv_bytes_per_token(a, "fp8")
    assert out["kv_cache_bytes"] == 300 * kv_bytes_per_token(a, "fp8")


def test_multi_head_config_without_kv_heads_uses_all_heads(ex, tiny_llama_config):
    cfg = dict(tiny_llama_config)
    cfg.pop("num_key_value_heads")
    out = ex.memory_needs(cfg, kv_bytes=4, context=1)
    assert out["kv_bytes_per_token"] == 2 * 2 * 4 * 16 * 4  # K and V, 2 layers, 4 heads, head_dim 16, fp32


def test_compare_models_sorts_by_total(ex):
    configs = {n: get_preset(n) for n in ("llama-3-70b", "smollm2-135m", "llama-3-8b")}
    rows = ex.compare_models(configs, context=8192)
    assert [r["model"] for r in rows] == ["smollm2-135m", "llama-3-8b", "llama-3-70b"]
