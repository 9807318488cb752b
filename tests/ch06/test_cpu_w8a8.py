"""ch06 cpu_w8a8: the C++ int8 x int8 GEMV equals its torch reference (exact integer sums) and stays
close to fp32."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ch06_quantization.cpu_gemv import gemv_problem
from ch06_quantization.cpu_w8a8 import W8A8Linear, quantize_rows, use_w8a8

pytestmark = pytest.mark.skipif(gemv_problem() is not None, reason=f"no C++ toolchain: {gemv_problem()}")


@pytest.mark.parametrize("rows", [1, 3, 8])
@pytest.mark.parametrize("shape", [(96, 64), (33, 100)])  # (out, in): odd rows, a K tail past 32-byte steps
def test_kernel_equals_the_integer_reference(rows, shape):
    torch.manual_seed(0)
    lin = nn.Linear(shape[1], shape[0], bias=True)
    q = W8A8Linear(lin)
    x = torch.randn(rows, shape[1])
    with torch.inference_mode():
        torch.testing.assert_close(q(x), q.reference(x), rtol=1e-6, atol=1e-5)
        rel = (q(x) - F.linear(x, lin.weight, lin.bias)).norm() / F.linear(x, lin.weight, lin.bias).norm()
    assert rel < 0.02  # two int8 roundings: about 1% here


def test_activation_rounding_is_symmetric_per_row():
    x = torch.tensor([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0]])
    xq, s = quantize_rows(x)
    assert xq.dtype == torch.int8 and xq[0].tolist() == [64, -127, 32] and s[1].item() == 1.0  # zero row


def test_use_w8a8_keeps_most_greedy_tokens_of_the_tiny_model(tiny_model):
    from ch04_kvcache.generate import generate

    prompt = [5, 17, 42, 99, 3]
    ref = generate(tiny_model, prompt, 16, cache="contiguous", eos_token_id=None).token_ids
    assert use_w8a8(tiny_model) == 15
    got = generate(tiny_model, prompt, 16, cache="contiguous", eos_token_id=None).token_ids
    assert got[:4] == ref[:4]  # lossy, so only the first tokens are held to fp32's
