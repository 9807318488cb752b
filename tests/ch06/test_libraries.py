"""Library wrappers (book 6.4.3/6.4.4): each rewrites the decoder linears and stays close to fp32."""

from __future__ import annotations

import pytest
import torch

from ch06_quantization.libraries import LIBRARY_METHODS, LibraryMissing, _require


def test_a_missing_library_raises_one_sentence_with_the_install_hint():
    with pytest.raises(LibraryMissing, match=r"pip install -e '\.\[quant\]'"):
        _require(False, "somelib")


@pytest.mark.parametrize("name", ["bnb nf4", "bnb int8", "torchao int8", "quanto int8"])
def test_library_method_keeps_logits_close(name, tiny_model):
    fn, available = LIBRARY_METHODS[name]
    if not available:
        pytest.skip(f"{name}: library not installed")
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        ref = tiny_model(ids)
        out = fn(tiny_model)(ids)
    assert out.shape == ref.shape
    limit = 0.25 if "4" in name else 0.05  # 4-bit on a random tiny model: ~12% measured; 8-bit: < 1%
    assert float((out - ref).norm() / ref.norm()) < limit
