"""The run-time-built C++ RMSNorm equals eager torch (the build is cached; the first one takes minutes)."""

import pytest
import torch

from ch09_advanced.cpp_op import build, rmsnorm_reference


@pytest.mark.slow
def test_cpp_rmsnorm_matches_torch_and_rejects_bad_input():
    ext = build()
    torch.manual_seed(0)
    x, w = torch.randn(33, 100), torch.randn(100)
    torch.testing.assert_close(ext.rmsnorm(x, w, 1e-5), rmsnorm_reference(x, w))
    with pytest.raises(RuntimeError):
        ext.rmsnorm(x.double(), w, 1e-5)


def test_reference_matches_ch04_rmsnorm():
    from ch04_kvcache.model import RMSNorm

    norm = RMSNorm(16, 1e-5)
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(4, 16)
    torch.testing.assert_close(rmsnorm_reference(x, norm.weight.detach()), norm(x).detach())
