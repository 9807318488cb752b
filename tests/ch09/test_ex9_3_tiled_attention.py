"""Exercise 9.3: tiled attention with online softmax equals standard attention for any block size."""

import pytest
import torch

from ch09_advanced.flash_attention import standard_attention


@pytest.mark.parametrize("block", [1, 7, 64, 500])
def test_tiled_attention_matches_standard(exercise, block):
    mod = exercise("ch09_advanced", "ex9_3_tiled_attention")
    torch.manual_seed(0)
    q, k, v = torch.randn(50, 16), torch.randn(130, 16), torch.randn(130, 16)
    ref = standard_attention(q[None, None], k[None, None], v[None, None])[0, 0]
    torch.testing.assert_close(mod.tiled_attention(q, k, v, block), ref)
