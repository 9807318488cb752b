"""ch06 cpu_gemv: the C++ decode GEMV (fp32 and int8) equals F.linear on the same weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ch06_quantization.cpu_gemv import GemvLinear, gemv_problem, main, use_gemv

pytestmark = pytest.mark.skipif(gemv_problem() is not None, reason=f"no C++ toolchain: {gemv_problem()}")


def test_the_extension_was_built_for_this_simd_level():
    """The build flags follow common.cpu.simd_level (LLMIC_SIMD caps it): the kernels below run that path."""
    from ch06_quantization.cpu_kernels import module
    from common.cpu import simd_level

    assert module().simd_path() == simd_level()


def _linear(out_f: int, in_f: int, bias: bool = False) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(in_f, out_f, bias=bias).eval()


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("shape", [(96, 64), (33, 100)])  # (out, in): an odd row count, a K tail of 4
def test_fp32_kernel_equals_f_linear(rows, shape):
    lin = _linear(*shape)
    x = torch.randn(rows, shape[1])
    g = GemvLinear(lin, bits=32)
    with torch.inference_mode():
        torch.testing.assert_close(g(x), F.linear(x, lin.weight), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 5])
def test_int8_kernel_equals_f_linear_on_the_dequantized_weight(rows):
    from ch06_quantization.rtn import QuantSpec, fake_quantize

    lin = _linear(70, 96, bias=True)
    g = GemvLinear(lin, bits=8)
    torch.testing.assert_close(g.dequantized_weight(), fake_quantize(lin.weight, QuantSpec(8, "channel")))
    x = torch.randn(1, rows, 96)  # (B, T, in): the kernel keeps the leading dims
    with torch.inference_mode():
        y = g(x)
        assert y.shape == (1, rows, 70)
        torch.testing.assert_close(y, F.linear(x, g.dequantized_weight(), lin.bias), rtol=1e-4, atol=1e-4)
    assert g.q.dtype == torch.uint8 and g.q.numel() == 70 * 96  # a quarter of the fp32 bytes


def test_more_rows_than_max_rows_take_the_plain_path():
    lin = _linear(40, 64)
    g = GemvLinear(lin, bits=32, max_rows=4)
    x = torch.randn(9, 64)
    with torch.inference_mode():
        torch.testing.assert_close(g(x), F.linear(x, lin.weight))


def test_use_gemv_keeps_greedy_tokens(tiny_model):
    from ch04_kvcache.generate import generate

    prompt = [5, 17, 42, 99, 3]
    ref = generate(tiny_model, prompt, 12, cache="contiguous", eos_token_id=None).token_ids
    n = use_gemv(tiny_model, bits=32)
    assert n == 2 * 7 + 1  # q k v o gate up down per block, and the LM head
    assert not any(isinstance(m, nn.Linear) for m in tiny_model.modules())
    assert generate(tiny_model, prompt, 12, cache="contiguous", eos_token_id=None).token_ids == ref


def test_use_gemv_refuses_a_non_fp32_model(tiny_model):
    with pytest.raises(ValueError, match="fp32"):
        use_gemv(tiny_model.to(torch.bfloat16))
    with pytest.raises(ValueError, match="not 4 bits"):
        GemvLinear(_linear(8, 16), bits=4)


def test_cli_smoke_prints_a_table_and_json(capsys, embedded_model_dir):
    assert main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "gemv fp32 ms" in out
    import json

    data = json.loads(out.strip().splitlines()[-1])
    assert data["linears"] == 14 and data["gemv_vs_linear_1_row"] > 0
