"""QAT with straight-through gradients (book 6.2.2)."""

from __future__ import annotations

import torch

from ch06_quantization.qat import run, ste_quantize
from ch06_quantization.rtn import QuantSpec, fake_quantize


def test_straight_through_estimator_passes_gradients_unchanged():
    w = torch.randn(4, 8, requires_grad=True)
    spec = QuantSpec(2, "channel", symmetric=True)
    y = ste_quantize(w, spec)
    torch.testing.assert_close(y.detach(), fake_quantize(w.detach(), spec))
    y.sum().backward()
    torch.testing.assert_close(w.grad, torch.ones_like(w))


def test_qat_recovers_part_of_the_two_bit_loss():
    r = run(2, d=8, h=32, float_steps=60, qat_steps=60)
    assert r.qat_mse < r.ptq_mse
