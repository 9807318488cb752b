"""4.4.1/4.4.2: KV bytes per token by attention type, and KV-head conversion (exact MHA, pooled MQA)."""

from __future__ import annotations

import pytest
import torch

from ch04_kvcache.gqa import convert_kv_heads, kv_bytes_per_token_formula, memory_rows
from ch04_kvcache.kv_cache import ContiguousKVCache


def test_memory_formula_equals_measured_cache_bytes(tiny_model):
    model, _ = tiny_model
    rows = memory_rows(model.config)
    assert [r["kv_heads"] for r in rows] == [4, 2, 1]  # MHA, GQA (the model), MQA
    assert all(r["bytes_per_token_formula"] == r["bytes_per_token_measured"] for r in rows)
    assert rows[-1]["vs_mha"] == pytest.approx(1 / 4)
    assert kv_bytes_per_token_formula(model.config, 2, 2) == 2 * 2 * 2 * 16 * 2


def test_repeating_kv_heads_into_mha_is_exact(tiny_model):
    model, _ = tiny_model
    mha = convert_kv_heads(model, 4)
    ids = torch.randint(0, 256, (1, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(mha(ids), model(ids), atol=1e-5, rtol=1e-5)
    assert mha.config.num_kv_heads == 4


def test_mean_pooled_mqa_runs_with_one_kv_head_and_a_third_smaller_cache(tiny_model):
    model, _ = tiny_model
    mqa = convert_kv_heads(model, 1)
    assert mqa.layers[0].self_attn.k_proj.weight.shape == (16, 64)
    expected = model.layers[0].self_attn.k_proj.weight.view(2, 16, 64).mean(0)
    torch.testing.assert_close(mqa.layers[0].self_attn.k_proj.weight, expected)
    cache = ContiguousKVCache(mqa.config, 1, 8)
    assert cache.nbytes * 2 == ContiguousKVCache(model.config, 1, 8).nbytes
    with torch.no_grad():
        out = mqa(torch.tensor([[5, 6, 7]]), cache=cache)
    assert torch.isfinite(out).all() and cache.length == 3
    with pytest.raises(ValueError, match="regroup"):
        convert_kv_heads(model, 3)
