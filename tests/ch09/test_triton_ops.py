"""The Triton RMSNorm kernel equals the torch reference: interpreter on CPU, real kernel on GPU."""

import pytest
import torch

from ch09_advanced import triton_ops

needs_triton = pytest.mark.skipif(not triton_ops.HAS_TRITON, reason="triton is not installed (pip install triton)")


@needs_triton
def test_triton_rmsnorm_matches_torch_in_interpreter():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the interpreter path is for CPU-only machines")
    torch.manual_seed(0)
    x, w = torch.randn(5, 100), torch.randn(100)  # 100 is not a power of two: exercises the mask
    torch.testing.assert_close(triton_ops.rmsnorm_triton(x, w), triton_ops.rmsnorm_reference(x, w))


@needs_triton
def test_triton_rmsnorm_rejects_non_contiguous_input():
    with pytest.raises(ValueError):
        triton_ops.rmsnorm_triton(torch.randn(8, 4).t(), torch.randn(8))


@pytest.mark.gpu
@needs_triton
def test_triton_rmsnorm_matches_torch_on_gpu():
    torch.manual_seed(0)
    x, w = torch.randn(64, 576, device="cuda"), torch.randn(576, device="cuda")
    torch.testing.assert_close(triton_ops.rmsnorm_triton(x, w), triton_ops.rmsnorm_reference(x, w))
