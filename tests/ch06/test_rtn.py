"""RTN quantization, bit packing and QuantLinear (book 6.2.1)."""

from __future__ import annotations

import pytest
import torch

from ch06_quantization.rtn import (
    QuantLinear,
    QuantSpec,
    decoder_linears,
    fake_quantize,
    pack_bits,
    quantize_model_rtn,
    quantize_rtn,
    relative_error,
    unpack_bits,
)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_pack_then_unpack_returns_the_same_integers(bits):
    q = torch.randint(0, 1 << bits, (16, 24), dtype=torch.uint8)
    packed = pack_bits(q, bits)
    assert packed.numel() == q.numel() * bits // 8
    assert torch.equal(unpack_bits(packed, bits, q.numel()).reshape(16, 24), q)


def test_symmetric_uses_the_midpoint_zero_and_asymmetric_covers_min_and_max():
    w = torch.randn(8, 64)
    sym = quantize_rtn(w, QuantSpec(4, "group", 32, symmetric=True))
    assert torch.all(sym.zeros == 8)
    asym = quantize_rtn(w, QuantSpec(4, "group", 32, symmetric=False))
    assert asym.q.min() == 0 and asym.q.max() == 15
    assert asym.scales.shape == (8, 2)


def test_finer_granularity_gives_smaller_error():
    torch.manual_seed(0)
    w = torch.randn(64, 256) * torch.logspace(-2, 0, 64)[:, None]  # rows of very different scale
    errs = [relative_error(w, fake_quantize(w, QuantSpec(4, g, 32))) for g in ("tensor", "channel", "group")]
    assert errs[0] > errs[1] > errs[2]
    assert relative_error(w, fake_quantize(w, QuantSpec(8, "channel", symmetric=True))) < 0.01


def test_group_size_must_divide_the_input_dimension():
    with pytest.raises(ValueError, match="does not divide"):
        quantize_rtn(torch.randn(4, 576), QuantSpec(4, "group", 128))


def test_quant_linear_matches_a_dense_linear_with_the_dequantized_weight():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    qw = quantize_rtn(lin.weight, QuantSpec(3, "group", 16))
    ql = QuantLinear(qw, lin.bias)
    x = torch.randn(5, 64)
    torch.testing.assert_close(ql(x), torch.nn.functional.linear(x, qw.dequantize(), lin.bias))
    assert ql.nbytes < lin.weight.numel() * 4 / 6  # 3-bit + small scales << fp32


def test_quantize_model_replaces_every_decoder_linear(tiny_model):
    n = len(decoder_linears(tiny_model))
    quantize_model_rtn(tiny_model, QuantSpec(8, "channel", symmetric=True))
    assert sum(isinstance(m, QuantLinear) for m in tiny_model.modules()) == n == 14
    assert tiny_model(torch.tensor([[1, 2, 3]])).isfinite().all()


def test_upstream_q4_1_grid_is_lossless_but_integer_zero_points_are_not(embedded_model_dir):
    from ch06_quantization.formats import load_weights, q4_1_round_trip

    name = "model.layers.3.mlp.up_proj.weight"
    w = load_weights(str(embedded_model_dir), names=[name])[name]
    assert relative_error(w, q4_1_round_trip(w)) < 1e-3  # the grid the weights already sit on
    g32 = relative_error(w, fake_quantize(w, QuantSpec(4, "group", 32)))
    g64 = relative_error(w, fake_quantize(w, QuantSpec(4, "group", 64)))
    assert 0.02 < g32 < g64  # GPTQ/AWQ-style integer zero points cannot express Q4_1's float minimum
