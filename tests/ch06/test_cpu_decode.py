"""ch06 cpu_decode: the fused C++ decode step equals the model it wraps (logits, cache, greedy tokens)."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch

from ch04_kvcache.generate import generate
from ch04_kvcache.kv_cache import CacheFullError, ContiguousKVCache
from ch04_kvcache.model import LlamaModel
from ch06_quantization.cpu_decode import FusedDecoder, fused_decode_problem, fused_int8, main
from ch06_quantization.cpu_gemv import use_gemv
from ch06_quantization.cpu_w8a8 import use_w8a8

pytestmark = pytest.mark.skipif(fused_decode_problem() is not None,
                                reason=f"no C++ toolchain: {fused_decode_problem()}")


def _steps(model, prompt: torch.Tensor, chunks: list[int]) -> tuple[list[torch.Tensor], ContiguousKVCache]:
    """Prefill ``prompt`` then feed ``chunks`` (token counts) of fixed ids; the logits of every call."""
    cache = ContiguousKVCache(model.config, 1, 64)
    g = torch.Generator().manual_seed(1)
    outs = [model(prompt, cache=cache)]
    with torch.inference_mode():
        for t in chunks:
            ids = torch.randint(0, model.config.vocab_size, (1, t), generator=g)
            outs.append(model(ids, cache=cache, logits_to_keep=t if t > 1 else 1))
    return outs, cache


@pytest.mark.parametrize("kind", ["fp32 packed", "fp32 row-major", "int8", "w8a8", "int4 g64 packed"])
def test_fused_step_equals_the_model(tiny_model, kind):
    """Decode (1 token) and verify-sized (5, 3 tokens) steps: same logits and K/V as the model's forward."""
    if kind == "int8":
        use_gemv(tiny_model, bits=8)  # the reference is the int8 model's own (dequantized) forward
    if kind == "w8a8":
        use_w8a8(tiny_model, max_rows=32)  # its own forward rounds the activations the same way
    if kind == "int4 g64 packed":  # cpu_qgemv's kernel, per layer in the reference
        from ch06_quantization.cpu_qgemv import use_packed
        from ch06_quantization.rtn import QuantSpec, quantize_model_rtn

        use_packed(quantize_model_rtn(tiny_model, QuantSpec(4, "group", 64)), max_rows=32,
                   head=QuantSpec(8, "channel", symmetric=True))
    ref_model = copy.deepcopy(tiny_model)
    fused = FusedDecoder(tiny_model, packed=kind != "fp32 row-major")
    if kind == "fp32 packed":
        assert fused._tensors[1].dim() == 3  # pack_rows's (N/4, K/8, 32)
    prompt = torch.tensor([[5, 17, 42, 99, 3, 7, 11, 2, 64, 30, 1, 9, 8, 77, 12, 6, 40, 21]])  # 18 > max_rows
    if kind in ("w8a8", "int4 g64 packed"):  # the prompt too goes through the kernel in the reference
        prompt = prompt[:, :16]
    with torch.inference_mode():
        want, c_want = _steps(ref_model, prompt, [1, 5, 1, 3])
        got, c_got = _steps(fused, prompt, [1, 5, 1, 3])
    assert c_got.length == c_want.length == prompt.shape[1] + 10
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    n = c_want.length
    torch.testing.assert_close(c_got.k[..., :n, :], c_want.k[..., :n, :], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c_got.v[..., :n, :], c_want.v[..., :n, :], rtol=1e-5, atol=1e-5)


def test_greedy_tokens_identical_and_int8_close(tiny_model):
    prompt = [5, 17, 42, 99, 3]
    ref = generate(tiny_model, prompt, 16, eos_token_id=None).token_ids
    int8_ref_model = copy.deepcopy(tiny_model)
    use_gemv(int8_ref_model, bits=8)
    int8_ref = generate(int8_ref_model, prompt, 16, eos_token_id=None).token_ids
    assert generate(FusedDecoder(tiny_model), prompt, 16, eos_token_id=None).token_ids == ref
    assert generate(fused_int8(int8_ref_model), prompt, 16, eos_token_id=None).token_ids == int8_ref


def test_packing_shares_the_weights_and_a_self_draft_copies_nothing(tiny_model):
    fused = FusedDecoder(tiny_model, packed=False)
    layer = tiny_model.layers[0]
    qkv = fused._tensors[1]
    assert layer.self_attn.q_proj.weight.data_ptr() == qkv.data_ptr()  # the model now computes from the packed copy
    assert layer.self_attn.k_proj.weight.data_ptr() == qkv[tiny_model.config.num_heads * tiny_model.config.head_dim:].data_ptr()
    draft = copy.copy(tiny_model)  # what ch07's truncated self-draft does: the same block objects
    draft.config = dataclasses.replace(tiny_model.config, num_layers=1)
    draft.layers = torch.nn.ModuleList(tiny_model.layers[:1])
    again = FusedDecoder(draft, packed=False)
    assert again._tensors[1].data_ptr() == qkv.data_ptr() and again._tensors[10].data_ptr() == fused._tensors[10].data_ptr()
    target = FusedDecoder(tiny_model)  # the pack_rows copies: a decoder over the first block reuses them
    reused = FusedDecoder(draft, reuse=target)
    assert reused._tensors[1] is target._tensors[1] and reused._tensors[-4] is target._tensors[-4]  # qkv, LM head
    assert FusedDecoder(draft)._tensors[1] is not target._tensors[1]


def test_other_calls_go_to_the_model(tiny_model):
    fused = FusedDecoder(tiny_model, max_rows=4)
    ids = torch.tensor([[5, 17, 42, 99, 3, 7]])
    with torch.inference_mode():
        torch.testing.assert_close(fused(ids), tiny_model(ids))  # no cache
        big = ContiguousKVCache(tiny_model.config, 2, 16)
        torch.testing.assert_close(fused(ids.expand(2, -1), cache=big), tiny_model(ids.expand(2, -1),
                                   cache=ContiguousKVCache(tiny_model.config, 2, 16)))  # batch 2


def test_bad_input_is_refused(tiny_model):
    fused = FusedDecoder(tiny_model)
    cache = ContiguousKVCache(tiny_model.config, 1, 4)
    with torch.inference_mode():
        fused(torch.tensor([[1, 2, 3]]), cache=cache)
        with pytest.raises(CacheFullError):
            fused(torch.tensor([[1, 2]]), cache=cache)
        assert cache.length == 3  # nothing written
        with pytest.raises(RuntimeError, match="outside the vocabulary"):
            fused(torch.tensor([[tiny_model.config.vocab_size]]), cache=cache)
    with pytest.raises(ValueError, match="fp32"):
        FusedDecoder(copy.deepcopy(tiny_model).to(torch.bfloat16))
    biased = LlamaModel(dataclasses.replace(tiny_model.config, qkv_bias=True))
    with pytest.raises(ValueError, match="bias"):
        FusedDecoder(biased)


def test_cli_smoke_prints_a_table_and_json(capsys, embedded_model_dir):
    assert main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "fused int8" in out
    data = json.loads(out.strip().splitlines()[-1])
    assert data["layers"] == 4 and data["fp32_tokens_identical"] is True
    assert data["fused_fp32_vs_eager"] > 0 and data["fused_int8_vs_fused_fp32"] > 0
