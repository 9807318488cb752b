"""4.2: the cached loop gives the same tokens with far fewer FLOPs; the FLOP count is right."""

from __future__ import annotations

from ch04_kvcache.config import ModelConfig
from ch04_kvcache.no_cache_vs_cache import compare, forward_flops, generation_flops, layer_matmul_params


def test_forward_flops_counts_projections_attention_and_one_logit_row(tiny_llama_config):
    cfg = ModelConfig.from_dict(tiny_llama_config)
    # one token at context 1: projections + QK/AV over 1 key + lm_head
    expected = 2 * cfg.num_layers * layer_matmul_params(cfg) + 4 * cfg.num_layers * cfg.num_heads * cfg.head_dim \
        + 2 * cfg.hidden_size * cfg.vocab_size
    assert forward_flops(cfg, 1, 1) == expected
    # a 3-token prompt: keys 1 + 2 + 3 = 6
    attn = forward_flops(cfg, 3, 3) - 3 * 2 * cfg.num_layers * layer_matmul_params(cfg) - 2 * cfg.hidden_size * \
        cfg.vocab_size
    assert attn == 4 * cfg.num_layers * cfg.num_heads * cfg.head_dim * 6


def test_no_cache_flops_grow_quadratically_and_cache_flops_linearly(tiny_llama_config):
    cfg = ModelConfig.from_dict(tiny_llama_config)
    none = [generation_flops(cfg, 16, n, cached=False) for n in (32, 64, 128)]
    kv = [generation_flops(cfg, 16, n, cached=True) for n in (32, 64, 128)]
    assert none[2] / none[1] > 2.5 and kv[2] / kv[1] < 2.1
    assert generation_flops(cfg, 16, 1, cached=False) == generation_flops(cfg, 16, 1, cached=True)


def test_compare_reports_identical_tokens_and_rows_per_length(tiny_model):
    model, _ = tiny_model
    res = compare(model, list(range(3, 15)), 16)
    assert res.tokens_identical
    assert [r["new_tokens"] for r in res.rows] == [1, 8, 16]
    assert all(r["no_cache_s"] > 0 and r["kv_cache_s"] > 0 for r in res.rows)
    assert res.rows[-1]["flop_ratio"] > res.rows[1]["flop_ratio"] > 1
