"""ch06 cpu_qgemv: the packed int4/int8 GEMV equals its integer reference and the dequantize-then-matmul one.

Tolerances: against :meth:`PackedLinear.reference` (the same int8 activation rounding, block sums exact in
fp64) the kernel differs only by fp32 rounding of the scaled block sums: rtol 1e-5, atol 1e-5. Against
``QuantLinear`` (dequantize, then an fp32 matmul) it also differs by the int8 rounding of the activations:
relative error below 1.5% (measured ~0.5%). Each SIMD path runs this file: the native build here (AVX-512
VNNI on this machine), the scalar one through test_cpu_kernels_isa.py (which also checks that a lower build
gives the native one's outputs bit for bit), and AVX2 with ``LLMIC_SIMD=avx2 pytest tests/ch06/test_cpu_qgemv.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ch06_quantization.cpu_gemv import gemv_problem
from ch06_quantization.cpu_qgemv import (
    PackedLinear,
    fits,
    pack_weights,
    qgemv_path,
    tile_rows,
    unpack_weights,
    untile_rows,
    use_packed,
)
from ch06_quantization.rtn import QuantizedWeight, QuantLinear, QuantSpec, quantize_model_rtn, quantize_rtn

pytestmark = pytest.mark.skipif(gemv_problem() is not None, reason=f"no C++ toolchain: {gemv_problem()}")

SPECS = [QuantSpec(4, "group", 64), QuantSpec(4, "group", 32, symmetric=True), QuantSpec(4, "group", 64, True),
         QuantSpec(8, "channel", symmetric=True), QuantSpec(8, "group", 64)]


def test_the_path_follows_the_simd_level():
    from common.cpu import has_vnni, simd_level

    want = {"avx512": "avx512_vnni" if has_vnni() else "avx2", "avx2": "avx2", "scalar": "scalar"}[simd_level()]
    assert qgemv_path() == want


@pytest.mark.parametrize("act_bits", [8, 16])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.label().replace(" ", "-"))
def test_kernel_equals_the_integer_and_the_dequantized_references(spec, act_bits):
    torch.manual_seed(0)
    lin = nn.Linear(192, 144)  # 9 tiles of 16 rows: an odd split over threads and over 8/4/2/1 tiles at once
    ql = QuantLinear(quantize_rtn(lin.weight, spec), lin.bias)
    packed = PackedLinear.from_quant_linear(ql, max_rows=32, act_bits=act_bits)
    assert torch.equal(packed.dequantized_weight(), ql.dequantized_weight())  # same weights, element for element
    bound = 0.015 if act_bits == 8 else 2e-4  # the activations' rounding: measured ~0.6% and ~2.5e-5
    with torch.inference_mode():
        for rows in (1, 3, 6, 8, 11, 16, 19):  # VNNI: up to 8 activation rows a pass; AVX2: 4
            x = torch.randn(rows, 192) * torch.rand(1, 192) * 4  # uneven column scales, as real activations
            y = packed(x)
            torch.testing.assert_close(y, packed.reference(x), rtol=1e-5, atol=1e-5)
            ref = ql(x)
            assert ((y - ref).norm() / ref.norm()).item() < bound


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_the_largest_block_sums_stay_exact(sign):
    """Every int4 weight 15 and every activation rounded to +-127: the largest block sum there is. The AVX2
    path keeps a block's int4 x int8 products in int16 lanes (16 products each, |sum| <= 30480 < 32767) before
    widening them; a wrapped lane would be off by 65536 x the scales, far outside the tolerance."""
    qw = quantize_rtn(torch.randn(32, 128), QuantSpec(4, "group", 64))
    ql = QuantLinear(QuantizedWeight(torch.full_like(qw.q, 15), qw.scales, qw.zeros, qw.spec))
    packed = PackedLinear.from_quant_linear(ql)
    with torch.inference_mode():
        for rows in (1, 5):
            x = torch.full((rows, 128), 3.0 * sign)
            torch.testing.assert_close(packed(x), packed.reference(x), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(packed(x), ql(x), rtol=1e-5, atol=1e-4)


def test_act_order_columns_are_gathered():
    """A GPTQ act-order weight (g_idx a permutation of the groups): the kernel reads x through perm."""
    torch.manual_seed(1)
    qw = quantize_rtn(torch.randn(48, 128), QuantSpec(4, "group", 64))
    perm = torch.randperm(128)
    ql = QuantLinear(QuantizedWeight(qw.q, qw.scales, qw.zeros, qw.spec, (torch.arange(128) // 64)[perm].int()))
    packed = PackedLinear.from_quant_linear(ql)
    assert packed.perm.numel() == 128 and torch.equal(packed.dequantized_weight(), ql.dequantized_weight())
    x = torch.randn(2, 128)
    with torch.inference_mode():
        torch.testing.assert_close(packed(x), packed.reference(x), rtol=1e-5, atol=1e-5)
        assert ((packed(x) - ql(x)).norm() / ql(x).norm()).item() < 0.015


def test_layout_and_what_does_not_fit():
    q8 = torch.randint(0, 256, (32, 128), dtype=torch.uint8)
    q4 = q8 & 0x0F
    p8, p4 = pack_weights(q8, 8), pack_weights(q4, 4)
    assert p8.shape == (2, 4, 8, 64) and p4.shape == (2, 4, 4, 64)
    assert torch.equal(unpack_weights(p8), q8) and torch.equal(unpack_weights(p4), q4)
    # tile 1, block 2, step 3, byte 4r + j: int8 column 64 + 4*3 + j of row 16 + r; int4 columns 64 + 8*3 + j | + 4
    r, j = 5, 2
    assert int(p8[1, 2, 3, 4 * r + j]) == int(q8[16 + r, 64 + 12 + j])
    assert int(p4[1, 2, 3, 4 * r + j]) == int(q4[16 + r, 64 + 24 + j]) | int(q4[16 + r, 64 + 28 + j]) << 4
    s = torch.randn(32, 3)
    assert tile_rows(s).shape == (2, 3, 16) and torch.equal(untile_rows(tile_rows(s)), s)
    assert fits(quantize_rtn(torch.randn(16, 80), QuantSpec(4, "group", 16))) is not None  # 80 % 32, g16
    assert fits(quantize_rtn(torch.randn(20, 128), QuantSpec(4, "group", 64))) is not None  # 20 rows % 16
    assert fits(quantize_rtn(torch.randn(16, 128), QuantSpec(3, "group", 64))) is not None  # 3 bits
    assert fits(quantize_rtn(torch.randn(16, 96), QuantSpec(4, "group", 32))) is None  # 96 = 3 blocks of 32


def test_long_inputs_take_the_dequantized_matmul_exactly():
    torch.manual_seed(2)
    ql = QuantLinear(quantize_rtn(torch.randn(16, 64), QuantSpec(4, "group", 64)))
    packed = PackedLinear.from_quant_linear(ql, max_rows=4)
    x = torch.randn(2, 10, 64)  # 20 rows > max_rows: a prefill
    with torch.inference_mode():
        assert torch.equal(packed(x), ql(x))


@pytest.mark.parametrize("spec", [QuantSpec(4, "group", 64), QuantSpec(8, "channel", symmetric=True)],
                         ids=["int4-g64", "int8"])
def test_fused_greedy_tokens_equal_the_quantlinear_model(tiny_model, spec):
    """Short prompt, greedy: the fused C++ step on packed weights gives the dequantize-then-matmul model's tokens."""
    import copy

    from ch04_kvcache.generate import generate
    from ch06_quantization.cpu_decode import FusedDecoder, fast_decoder

    prompt = [5, 17, 42, 99, 3]
    ref_model = quantize_model_rtn(tiny_model, spec)
    ref = generate(ref_model, prompt, 8, cache="contiguous", eos_token_id=None).token_ids
    model = copy.deepcopy(ref_model)
    fused = fast_decoder(model)
    assert isinstance(fused, FusedDecoder) and sum(isinstance(m, PackedLinear) for m in model.modules()) == 14
    assert generate(fused, prompt, 8, cache="contiguous", eos_token_id=None).token_ids == ref
    assert use_packed(copy.deepcopy(ref_model)) == 14


@pytest.mark.slow
def test_the_fast_decoder_keeps_quantlinears_greedy_tokens_on_the_embedded_model(embedded_model_dir):
    """int8 activations drift off QuantLinear's fp32-activation tokens within a few tokens on the real model
    (README, "What is missing"); rounded to int16 per block (fast_decoder's default), the fused step keeps them."""
    import copy

    from ch04_kvcache.generate import generate
    from ch04_kvcache.model import LlamaModel
    from ch06_quantization.cpu_decode import FusedDecoder, fast_decoder

    spec = QuantSpec(4, "group", 64)
    ref = quantize_model_rtn(LlamaModel.from_pretrained(embedded_model_dir).float().eval(), spec)
    model = copy.deepcopy(ref)
    fused = fast_decoder(model)
    packed = [m for m in model.modules() if isinstance(m, PackedLinear)]
    assert isinstance(fused, FusedDecoder) and len(packed) == 210 and {m.act_bits for m in packed} == {16}
    with torch.inference_mode():
        for prompt in ([1, 504, 3458, 282, 4649, 314, 2030, 47], [1, 9690, 198, 2683, 359, 253, 5356, 2]):
            want = generate(ref, prompt, 24, cache="contiguous", eos_token_id=None).token_ids
            assert generate(fused, prompt, 24, cache="contiguous", eos_token_id=None).token_ids == want
