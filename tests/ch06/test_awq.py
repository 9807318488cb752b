"""AWQ from scratch (book 6.4.2): scale search, clip search, scale folding."""

from __future__ import annotations

import torch
from torch import nn

from ch06_quantization.awq import AWQConfig, awq_quantize_model, search_clip, search_scale
from ch06_quantization.rtn import QuantLinear, QuantSpec, fake_quantize


def test_scale_search_protects_outlier_channels_better_than_rtn():
    torch.manual_seed(0)
    x = torch.randn(256, 128)
    x[:, :4] *= 30
    lin = nn.Linear(128, 64, bias=False)
    spec = QuantSpec(4, "group", 32)
    s, alpha, ratio = search_scale(x, [lin], lin, spec, n_grid=10)
    ref = lin(x)
    rtn = (x @ fake_quantize(lin.weight.data, spec).T - ref).pow(2).mean()
    awq = (x @ (fake_quantize(lin.weight.data * s, spec) / s).T - ref).pow(2).mean()
    assert alpha > 0 and ratio < 1 and awq < rtn
    assert s[:4].mean() > s[4:].mean()  # the active channels get the larger scales


def test_clip_search_never_widens_the_range():
    torch.manual_seed(1)
    w, x = torch.randn(16, 64), torch.randn(50, 64)
    max_val = search_clip(w, x, QuantSpec(4, "group", 32), n_grid=10, max_shrink=0.5)
    org = w.reshape(16, 2, 32).abs().amax(-1, keepdim=True)
    assert max_val.shape == (16, 2, 1)
    assert torch.all(max_val <= org) and torch.all(max_val >= 0.5 * org)


def test_awq_model_quantizes_all_linears_and_keeps_logits_close(tiny_model, tiny_calib):
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    ref = tiny_model(ids)
    rep = awq_quantize_model(tiny_model, tiny_calib, AWQConfig(QuantSpec(8, "group", 16), n_grid=5))
    assert sum(isinstance(m, QuantLinear) for m in tiny_model.modules()) == 14
    assert set(rep.alphas) == {f"layers.{i}.{p}" for i in range(2) for p in ("attn", "mlp", "down")}
    assert all(r <= 1.0 for r in rep.loss_ratio.values())  # alpha = 0 (plain RTN) is in the grid
    out = tiny_model(ids)
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
