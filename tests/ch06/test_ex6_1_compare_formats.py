"""Exercise 6.1: compare formats for speed and accuracy."""

from __future__ import annotations

import torch


def test_formats_are_ordered_by_bits_in_error_and_bytes(exercise):
    check_formats(exercise("ch06_quantization", "ex6_1_compare_formats"))


def check_formats(mod) -> None:
    """Errors ordered by precision; bytes are the weights' bits plus, for the integer formats, their scales
    (one per output channel for int8, one per 64 weights for int4-g64; at most 8 bytes each)."""
    torch.manual_seed(0)
    W, X = torch.randn(128, 256) * 0.02, torch.randn(8, 256)
    res = {r.format: r for r in mod.compare_formats(W, X, repeats=1)}
    assert list(res) == list(mod.FORMATS)
    assert res["fp32"].output_rel_err == 0
    assert res["fp16"].output_rel_err < res["int8"].output_rel_err < res["int4-g64"].output_rel_err
    assert res["fp32"].bytes == 128 * 256 * 4 and res["fp16"].bytes == res["fp32"].bytes // 2
    assert res["int4-g64"].bytes < res["int8"].bytes < res["fp16"].bytes
    assert res["fp16"].output_rel_err < res["bf16"].output_rel_err
    assert res["fp8-e4m3"].output_rel_err < res["int4-g64"].output_rel_err
    n = 128 * 256
    assert res["bf16"].bytes == n * 2 and res["fp8-e4m3"].bytes == n
    assert n < res["int8"].bytes <= n + 128 * 8, "int8 bytes: one byte per weight plus per-channel scales"
    assert n // 2 < res["int4-g64"].bytes <= n // 2 + (n // 64) * 8, \
        "int4-g64 bytes: half a byte per weight plus one scale per group of 64"
    assert all(r.matmul_s > 0 for r in res.values())
