"""The static-cache decode step gives ch04's greedy tokens, eager and compiled, with no graph break."""

from __future__ import annotations

import pytest
import torch

from ch04_kvcache.generate import generate
from ch09_advanced.compile_decode import StaticDecoder, bytes_per_token, graph_breaks, greedy


@pytest.fixture
def tiny(tiny_hf_model):
    from ch04_kvcache.model import LlamaModel

    return LlamaModel.from_pretrained(tiny_hf_model[1]).eval()


def test_static_decoder_matches_ch04_greedy_tokens(tiny):
    prompt = [5, 17, 99, 3]
    ref = generate(tiny, prompt, 10, cache="contiguous").token_ids
    dec = StaticDecoder(tiny, len(prompt) + 10)
    assert greedy(dec, dec, prompt, 10).tokens == ref


def test_bytes_per_token_counts_weights_once_plus_cache(tiny):
    dec = StaticDecoder(tiny, 16)
    weights = sum(p.numel() * 4 for p in tiny.parameters())
    assert bytes_per_token(tiny, dec) == weights + 2 * dec.k_cache.nbytes


@pytest.mark.slow
def test_compiled_decode_has_no_graph_break_and_same_tokens(tiny):
    dec = StaticDecoder(tiny, 12)
    assert graph_breaks(dec)["graph_break_count"] == 0
    torch._dynamo.reset()
    prompt = [5, 17, 99, 3]
    eager = greedy(dec, dec, prompt, 8).tokens
    assert greedy(torch.compile(dec), dec, prompt, 8).tokens == eager


def test_prepacked_eager_decoder_gives_the_same_tokens(tiny, tiny_hf_model):
    from ch04_kvcache.model import LlamaModel
    from ch05_scheduling.cpu_linear import can_prepack, prepack_linears

    if can_prepack(torch.float32, "cpu"):
        pytest.skip(can_prepack(torch.float32, "cpu"))
    packed = LlamaModel.from_pretrained(tiny_hf_model[1]).eval()
    prepack_linears(packed, batch_hint=1)
    prompt = [5, 17, 99, 3]
    dec, pdec = StaticDecoder(tiny, 12), StaticDecoder(packed, 12)
    assert greedy(pdec, pdec, prompt, 8).tokens == greedy(dec, dec, prompt, 8).tokens


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["freezing", "decompose-mm"])
def test_inductor_pass_modes_give_the_same_tokens(tiny, mode):
    from torch._dynamo.utils import counters

    from ch09_advanced.compile_decode import compile_step, configure_inductor

    dec = StaticDecoder(tiny, 12)
    prompt = [5, 17, 99, 3]
    eager = greedy(dec, dec, prompt, 8).tokens
    torch._dynamo.reset()
    counters.clear()
    try:
        assert greedy(compile_step(dec, mode), dec, prompt, 8).tokens == eager
        if mode == "decompose-mm":  # every linear (7 per layer) and the LM head: no matmul left for MKL
            assert counters["inductor"]["decompose_mm"] == 7 * len(tiny.layers) + 1
    finally:
        configure_inductor(None)
        torch._dynamo.reset()


def test_configure_inductor_switches_the_pass_on_and_back_off():
    import torch._inductor.config as inductor_config
    import torch._inductor.fx_passes.decompose_mem_bound_mm as decompose

    from ch09_advanced.compile_decode import configure_inductor

    try:
        configure_inductor("decompose-mm")
        assert "decompose_mm_pass" in inductor_config.post_grad_fusion_options
        assert decompose.cpu_max_other_dimension_decomposition >= 49152  # the embedded model's LM head
        assert not inductor_config.freezing
    finally:
        configure_inductor(None)
    assert "decompose_mm_pass" not in inductor_config.post_grad_fusion_options
    assert decompose.cpu_max_other_dimension_decomposition == decompose.CPU_MAX_OTHER_DIMENSION_DECOMPOSITION
