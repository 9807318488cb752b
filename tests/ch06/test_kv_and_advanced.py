"""KV-cache quantization measurements (6.5) and the advanced topics (6.7)."""

from __future__ import annotations

import torch

from ch06_quantization.advanced import W8A8Linear, block_sensitivity, scheduling_rows
from ch06_quantization.kv_quant import capture_kv, fake_quant_kv, outlier_ratio, rel_err
from ch06_quantization.rtn import QuantSpec


def test_token_head_int8_matches_ch04s_int8_kv_cache():
    from ch04_kvcache.int8_kv import dequantize, quantize_per_token_head

    x = torch.randn(2, 3, 10, 16)
    q, s = quantize_per_token_head(x)
    torch.testing.assert_close(fake_quant_kv(x, 8, "token_head"), dequantize(q, s, torch.float32))


def test_per_channel_scales_absorb_key_outlier_channels():
    torch.manual_seed(0)
    k = torch.randn(2, 3, 64, 16)
    k[..., 3] *= 20  # one outlier channel, as real keys have
    assert outlier_ratio(k) > 10
    assert rel_err(k, fake_quant_kv(k, 4, "channel")) < rel_err(k, fake_quant_kv(k, 4, "token_head"))


def test_capture_kv_returns_post_rope_keys_of_every_layer(tiny_model):
    K, V = capture_kv(tiny_model, [1, 2, 3, 4, 5])
    assert K.shape == V.shape == (2, 2, 5, 16)
    assert K.abs().sum() > 0


def test_block_sensitivity_is_positive_per_block(tiny_model, tiny_calib):
    errs = block_sensitivity(tiny_model, tiny_calib, QuantSpec(3, "group", 16))
    assert len(errs) == 2 and all(e > 0 for e in errs)


def test_static_activation_scale_is_worse_than_dynamic_with_an_outlier_token():
    torch.manual_seed(0)
    lin = torch.nn.Linear(32, 16)
    x = torch.randn(8, 32)
    x[0] *= 100  # one outlier token sets the static scale for all
    ref = lin(x)[1:]
    dyn = W8A8Linear(lin, "dynamic")(x)[1:]
    sta = W8A8Linear(lin, "static", float(x.abs().max()))(x)[1:]
    assert (dyn - ref).norm() < (sta - ref).norm()


def test_smaller_weights_leave_room_for_more_sequences():
    rows = {(r.gpu_gb, r.weights): r.max_seqs_at_4k for r in scheduling_rows()}
    assert rows[(24, "int4")] > rows[(24, "int8")] > rows[(24, "fp16")] > 0
