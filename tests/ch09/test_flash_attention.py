"""Tiled attention with online softmax equals the naive reference and keeps O(N) intermediates."""

from __future__ import annotations

import pytest
import torch

from ch09_advanced.flash_attention import flash_attention, memory_sweep, peak_bytes, standard_attention


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n,m,block", [(37, 37, 8), (64, 64, 16), (5, 29, 4), (1, 50, 16)])
def test_flash_matches_standard_attention(causal, n, m, block):
    torch.manual_seed(0)
    q = torch.randn(2, 3, n, 16)
    k, v = torch.randn(2, 3, m, 16), torch.randn(2, 3, m, 16)
    torch.testing.assert_close(flash_attention(q, k, v, causal, block, block), standard_attention(q, k, v, causal))


def test_standard_matches_sdpa():
    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 2, 33, 8) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(standard_attention(q, k, v, True), ref)


def test_flash_peak_memory_grows_linearly_and_standard_quadratically():
    p1, p2 = memory_sweep([256, 1024], head_dim=16, block=64)
    assert p2.standard_bytes / p1.standard_bytes > 12  # ~16x for 4x N
    assert p2.flash_bytes / p1.flash_bytes < 5  # ~4x or less
    assert p2.ratio > p1.ratio > 1


def test_peak_bytes_counts_a_known_allocation():
    assert peak_bytes(lambda: torch.zeros(1000)) == 4000


def test_bad_block_size_is_rejected():
    q = torch.randn(1, 1, 4, 4)
    with pytest.raises(ValueError):
        flash_attention(q, q, q, block_q=0)
