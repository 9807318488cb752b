"""4.4.4: the INT8 cache rounds within half a step, halves fp16 bytes (plus scales) and stays close."""

from __future__ import annotations

import torch

from ch04_kvcache.generate import generate
from ch04_kvcache.int8_kv import Int8KVCache, bytes_per_token, dequantize, quantize_per_token_head
from ch04_kvcache.kv_cache import ContiguousKVCache


def test_quantize_per_token_head_error_is_at_most_half_a_step():
    x = torch.randn(2, 3, 5, 64) * torch.logspace(-3, 2, 5)[None, None, :, None]  # very different scales
    q, s = quantize_per_token_head(x)
    assert q.dtype == torch.int8 and s.shape == (2, 3, 5, 1)
    err = (dequantize(q, s, torch.float32) - x).abs()
    assert (err <= s.float() / 2 + 1e-6 * x.abs()).all()
    assert quantize_per_token_head(torch.zeros(1, 4))[0].abs().sum() == 0


def test_int8_cache_bytes_are_half_of_fp16_plus_scales(tiny_model):
    model, _ = tiny_model
    cfg = model.config
    assert bytes_per_token(cfg, "int8") * 2 * cfg.head_dim == bytes_per_token(cfg, "fp16") * (cfg.head_dim + 2)
    assert bytes_per_token(cfg, "fp32") == 2 * bytes_per_token(cfg, "fp16")


def test_int8_cache_logits_close_to_full_precision_and_generate_accepts_it(tiny_model):
    model, _ = tiny_model
    ids = torch.randint(3, 256, (1, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(ids, cache=ContiguousKVCache(model.config, 1, 24))
        got = model(ids, cache=Int8KVCache(model.config, 1, 24))
    rel = (got - ref).norm() / ref.norm()
    assert 0 < rel < 0.02
    res = generate(model, ids[0].tolist(), 6, cache="int8", eos_token_id=None)
    assert len(res.token_ids) == 6 and res.cache_nbytes == Int8KVCache(model.config, 1, 30).nbytes
