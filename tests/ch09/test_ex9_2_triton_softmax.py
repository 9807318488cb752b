"""Exercise 9.2: the Triton softmax kernel equals torch.softmax (interpreter on CPU)."""

import pytest
import torch

from ch09_advanced.triton_ops import HAS_TRITON


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install triton); exercise 9.2 needs it")
def test_triton_softmax_matches_torch(exercise):
    mod = exercise("ch09_advanced", "ex9_2_triton_softmax")
    torch.manual_seed(0)
    x = torch.randn(6, 100) * 5
    torch.testing.assert_close(mod.softmax(x), torch.softmax(x, -1))
