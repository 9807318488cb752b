"""Prepacked (oneDNN) linears: the same model as plain nn.Linear, and the engine uses them on its own model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ch04_kvcache.generate import generate
from ch04_kvcache.model import LlamaModel
from ch05_scheduling.cpu_linear import PackedLinear, can_prepack, prepack_linears
from ch05_scheduling.engine import EngineConfig, LLMEngine
from ch05_scheduling.sequence import SamplingParams

pytestmark = pytest.mark.skipif(can_prepack(torch.float32, "cpu") is not None, reason="torch without oneDNN")


@pytest.mark.parametrize("rows", [1, 3, 8, 37])
@pytest.mark.parametrize("bias", [False, True])
def test_packed_linear_equals_nn_linear(rows, bias):
    torch.manual_seed(rows)
    lin = nn.Linear(64, 96, bias=bias)
    packed = PackedLinear(lin, batch_hint=8)
    x = torch.randn(rows, 64)
    with torch.inference_mode():
        torch.testing.assert_close(packed(x), lin(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(packed(x[None]), lin(x[None]))  # (B, T, in) works too


def test_prepacked_model_matches_plain_model_logits_and_greedy_tokens(tiny_hf_model):
    _, folder = tiny_hf_model
    plain, packed = LlamaModel.from_pretrained(folder), LlamaModel.from_pretrained(folder)
    n_linear = sum(isinstance(m, nn.Linear) for m in plain.modules())
    assert prepack_linears(packed) == n_linear
    assert not any(isinstance(m, nn.Linear) for m in packed.modules())
    ids = torch.tensor([[5, 9, 17, 3, 44, 81, 12]])
    with torch.inference_mode():
        torch.testing.assert_close(packed(ids), plain(ids), rtol=1e-4, atol=1e-4)
    prompt = ids[0].tolist()
    assert (generate(packed, prompt, 12, cache="contiguous", eos_token_id=None).token_ids
            == generate(plain, prompt, 12, cache="contiguous", eos_token_id=None).token_ids)


def test_engine_prepacks_only_a_model_it_loaded(tiny_hf_model, embedded_tokenizer):
    _, folder = tiny_hf_model
    given = LlamaModel.from_pretrained(folder)
    assert LLMEngine(EngineConfig(num_blocks=32), model=given).prepacked_linears == 0
    assert any(isinstance(m, nn.Linear) for m in given.modules())  # the caller's model is untouched
    own = LLMEngine(EngineConfig(model=str(folder), num_blocks=32, block_size=4), tokenizer=embedded_tokenizer)
    assert own.prepacked_linears > 0
    outs = own.generate([[5, 9, 17], [7, 7]], [SamplingParams(max_tokens=6, ignore_eos=True)] * 2)
    for prompt, out in zip([[5, 9, 17], [7, 7]], outs, strict=True):
        assert out.token_ids == generate(given, prompt, 6, cache="contiguous", eos_token_id=None).token_ids
    off = LLMEngine(EngineConfig(model=str(folder), num_blocks=32, cpu_prepack=False), tokenizer=embedded_tokenizer)
    assert off.prepacked_linears == 0


def test_prepack_refuses_what_it_cannot_do_with_a_reason():
    assert "CPU" in can_prepack(torch.float32, "cuda")
    assert "fp32" in can_prepack(torch.bfloat16, "cpu")
    with pytest.raises(ValueError, match="cannot prepack"):
        prepack_linears(nn.Sequential(nn.Linear(4, 4).to(torch.bfloat16)))
