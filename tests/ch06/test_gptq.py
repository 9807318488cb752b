"""GPTQ from scratch (book 6.4.1): the blocked sweep equals the naive one and beats RTN."""

from __future__ import annotations

import pytest
import torch

from ch06_quantization.gptq import (
    GPTQConfig,
    HessianAccumulator,
    gptq_quantize_model,
    gptq_quantize_weight,
    gptq_reference,
    layer_loss,
)
from ch06_quantization.rtn import QuantLinear, QuantSpec, fake_quantize


def _layer(seed: int = 0, n_in: int = 64, n_out: int = 32, n_tok: int = 400):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n_tok, n_in, generator=g) @ torch.randn(n_in, n_in, generator=g)  # correlated inputs
    W = torch.randn(n_out, n_in, generator=g)
    acc = HessianAccumulator(n_in)
    for chunk in X.split(100):  # the running average must equal one big batch
        acc.add(chunk)
    torch.testing.assert_close(acc.H, 2 * X.T @ X / n_tok, rtol=1e-4, atol=1e-3)
    return W, acc.H


@pytest.mark.parametrize("spec", [QuantSpec(4, "group", 16), QuantSpec(3, "channel", symmetric=True),
                                  QuantSpec(4, "tensor")])
@pytest.mark.parametrize("act_order", [False, True])
def test_blocked_lazy_batch_gptq_equals_the_naive_column_sweep(spec, act_order):
    W, H = _layer()
    cfg = GPTQConfig(spec, block_size=32, act_order=act_order)
    fast, slow = gptq_quantize_weight(W, H, cfg), gptq_reference(W, H, cfg)
    assert (fast.q == slow.q).float().mean() > 0.999
    torch.testing.assert_close(fast.scales, slow.scales)


@pytest.mark.parametrize("bits", [3, 4])
def test_gptq_has_lower_layer_loss_than_round_to_nearest(bits):
    W, H = _layer(1)
    spec = QuantSpec(bits, "group", 16)
    rtn = layer_loss(W, fake_quantize(W, spec), H)
    for act in (False, True):
        assert layer_loss(W, gptq_quantize_weight(W, H, GPTQConfig(spec, act_order=act)).dequantize(), H) < rtn


def test_act_order_records_a_group_index_per_input_column():
    W, H = _layer(2)
    qw = gptq_quantize_weight(W, H, GPTQConfig(QuantSpec(4, "group", 16), act_order=True))
    assert qw.g_idx is not None and qw.g_idx.shape == (64,)
    assert torch.bincount(qw.g_idx.long()).tolist() == [16, 16, 16, 16]  # every group holds 16 columns
    assert qw.dequantize().shape == W.shape


def test_whole_model_gptq_replaces_every_linear_and_keeps_logits_close(tiny_model, tiny_calib):
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    ref = tiny_model(ids)
    rep = gptq_quantize_model(tiny_model, tiny_calib, GPTQConfig(QuantSpec(8, "group", 16)))
    assert rep.linears == 14 and rep.layers == 2
    assert sum(isinstance(m, QuantLinear) for m in tiny_model.modules()) == 14
    out = tiny_model(ids)
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
