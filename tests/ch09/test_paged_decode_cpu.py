"""The C++ paged decode kernel equals ch04's naive paged attention and leaves the engine's tokens unchanged."""

from __future__ import annotations

import shutil

import pytest
import torch

from ch04_kvcache.paged_attention import build_plan, paged_attention, paged_attention_reference

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="no g++: cannot build the C++ extension")


@pytest.mark.parametrize(("seqs", "max_ctx", "block_size", "hkv", "group"),
                         [(1, 1, 4, 1, 1), (3, 37, 4, 2, 4), (5, 200, 16, 3, 3), (2, 64, 16, 4, 1)])
def test_kernel_equals_the_naive_reference(seqs, max_ctx, block_size, hkv, group):
    from ch09_advanced.paged_decode_cpu import kernel, random_case

    q, k, v, meta = random_case(seqs, max_ctx, block_size, hkv=hkv, group=group, d=32, seed=seqs)
    plan = build_plan(meta, block_size, q.device, decode_kernel=kernel)
    got = paged_attention(q, k.view(-1, hkv, 32), v.view(-1, hkv, 32), plan)
    torch.testing.assert_close(got, paged_attention_reference(q, k, v, meta), rtol=1e-5, atol=1e-5)


def test_mixed_batches_keep_the_torch_path():
    from ch04_kvcache.paged_attention import AttentionMetadata
    from ch09_advanced.paged_decode_cpu import kernel

    meta = AttentionMetadata([5, 1], [5, 9], [[7, 2], [3, 11, 5]], torch.tensor([28, 29, 30, 31, 8, 20]))
    plan = build_plan(meta, 4, torch.device("cpu"), decode_kernel=kernel)
    assert not plan.decode_only and plan.decode_kernel is None  # prefill rows: gather + SDPA as before


def test_engine_with_the_kernel_gives_the_same_greedy_tokens(tiny_hf_model):
    from ch04_kvcache.model import LlamaModel
    from ch05_scheduling.engine import EngineConfig, LLMEngine
    from ch05_scheduling.sequence import SamplingParams
    from ch09_advanced.paged_decode_cpu import install

    prompts = [[5, 9, 17, 3, 44], [7] * 3, list(range(20, 61))]
    params = [SamplingParams(max_tokens=n, ignore_eos=True) for n in (9, 14, 6)]
    model = LlamaModel.from_pretrained(tiny_hf_model[1])
    plain = LLMEngine(EngineConfig(block_size=4, num_blocks=64), model=model).generate(prompts, params)
    engine = LLMEngine(EngineConfig(block_size=4, num_blocks=64), model=model)
    install(engine)
    try:
        fast = engine.generate(prompts, params)
    finally:
        model.decode_kernel = None
    assert [o.token_ids for o in fast] == [o.token_ids for o in plain]
