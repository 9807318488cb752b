"""The engine's MLPs compiled with a symbolic token count give the eager outputs, and swap back cleanly."""

from __future__ import annotations

import pytest
import torch

from ch09_advanced.compile_engine import CompiledMLP, swiglu, use_compiled_mlps


@pytest.fixture
def tiny(tiny_hf_model):
    from ch04_kvcache.model import LlamaModel

    return LlamaModel.from_pretrained(tiny_hf_model[1]).eval()


def test_swiglu_is_ch04s_mlp(tiny):
    mlp = tiny.layers[0].mlp
    x = torch.randn(5, tiny.config.hidden_size)
    torch.testing.assert_close(swiglu(x, mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight), mlp(x))


@pytest.mark.slow
def test_compiled_mlps_match_eager_for_every_token_count_and_swap_back(tiny):
    eager = [layer.mlp for layer in tiny.layers]
    torch._dynamo.reset()
    use_compiled_mlps(tiny, True)
    try:
        assert all(isinstance(layer.mlp, CompiledMLP) for layer in tiny.layers)
        with torch.no_grad():
            for n in (3, 7, 1):  # ragged batches: a symbolic N (Dynamo gives N = 1 a graph of its own)
                x = torch.randn(n, tiny.config.hidden_size)
                for layer, mlp in zip(tiny.layers, eager, strict=True):
                    torch.testing.assert_close(layer.mlp(x), mlp(x), rtol=1e-5, atol=1e-5)
    finally:
        use_compiled_mlps(tiny, False)
        torch._dynamo.reset()
    assert [layer.mlp for layer in tiny.layers] == eager
