"""The Triton paged decode kernel equals ch04's naive paged attention (interpreter on CPU, real kernel on GPU)
and leaves the engine's greedy tokens unchanged."""

from __future__ import annotations

import pytest
import torch

from ch04_kvcache.paged_attention import build_plan, paged_attention, paged_attention_reference
from ch09_advanced import paged_decode_triton as pdt

pdt_kernel = pdt.kernel  # the real kernel, for the counting wrappers below
needs_triton = pytest.mark.skipif(not pdt.HAS_TRITON, reason="triton is not installed (pip install triton)")
interpreter_only = pytest.mark.skipif(not pdt.interpreting(),
                                      reason="TRITON_INTERPRET is not 1 (a GPU is present): see the gpu tests")


def _kernel_vs_reference(ctx_lens, block_size, hkv, group, d, dtype=torch.float32, device="cpu", tile=None):
    q, k, v, meta = pdt.make_case(ctx_lens, block_size, hkv, group, d, dtype, device, seed=len(ctx_lens))
    plan = build_plan(meta, block_size, q.device, decode_kernel=lambda *a: pdt.kernel(*a, tile=tile))
    got = paged_attention(q, k.view(-1, hkv, d), v.view(-1, hkv, d), plan)
    ref = paged_attention_reference(q.cpu().float(), k.cpu().float(), v.cpu().float(), meta)
    return got, ref


def _assert_kernel_keeps_the_engine_tokens(model, prompts, params, num_blocks, monkeypatch) -> None:
    """ch05's engine (blocks of 4) with the kernel installed ran it and gives the greedy tokens it gives without."""
    from ch05_scheduling.engine import EngineConfig, LLMEngine

    plain = LLMEngine(EngineConfig(block_size=4, num_blocks=num_blocks), model=model).generate(prompts, params)
    engine = LLMEngine(EngineConfig(block_size=4, num_blocks=num_blocks), model=model)
    calls = []
    monkeypatch.setattr(pdt, "kernel", lambda *a: calls.append(a[0].shape) or pdt_kernel(*a))
    pdt.install(engine)
    try:
        fast = engine.generate(prompts, params)
    finally:
        model.decode_kernel = None
    assert calls, "the engine never ran a pure-decode step through the kernel"
    assert [o.token_ids for o in fast] == [o.token_ids for o in plain]


@needs_triton
@interpreter_only
@pytest.mark.parametrize(("ctx_lens", "block_size", "hkv", "group", "tile"), [
    ([1], 4, 1, 1, None),                # a one-token context
    ([1, 8, 13, 4], 4, 2, 3, None),      # GQA 3; 8 and 4 fill their blocks exactly; 13 ends mid-block
    ([32, 17, 1], 16, 2, 1, None),       # block 16: an exact multiple, a ragged tail, a single token
    ([37, 5], 4, 1, 3, 8),               # a tile of 8 tokens spans two blocks of 4
    ([40, 16, 3], 16, 3, 3, 4),          # a tile of 4 tokens is a quarter of a block: several per block
])
def test_interpreter_kernel_equals_the_naive_reference(ctx_lens, block_size, hkv, group, tile):
    got, ref = _kernel_vs_reference(ctx_lens, block_size, hkv, group, 16, tile=tile)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@needs_triton
@interpreter_only
def test_interpreter_kernel_handles_a_head_dim_that_is_not_a_power_of_two():
    got, ref = _kernel_vs_reference([9, 3], 4, 1, 3, 24)  # D_P = 32, the last 8 lanes masked
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@needs_triton
@interpreter_only
def test_engine_with_the_interpreted_kernel_gives_the_same_greedy_tokens(tiny_hf_model, monkeypatch):
    from ch04_kvcache.model import LlamaModel
    from ch05_scheduling.sequence import SamplingParams

    prompts = [[5, 9, 17, 3, 44], [7] * 3]
    params = [SamplingParams(max_tokens=n, ignore_eos=True) for n in (6, 4)]
    model = LlamaModel.from_pretrained(tiny_hf_model[1])
    _assert_kernel_keeps_the_engine_tokens(model, prompts, params, 32, monkeypatch)


@needs_triton
def test_install_refuses_a_cpu_engine_when_not_interpreting(monkeypatch, tiny_llama_config):
    from ch04_kvcache.model import LlamaModel, ModelConfig

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    model = LlamaModel(ModelConfig.from_dict(tiny_llama_config))
    with pytest.raises(ValueError, match="CUDA GPU"):
        pdt.install(model)
    assert model.decode_kernel is None


@needs_triton
def test_the_kernel_compiles_for_an_h100_without_spilling():
    pytest.importorskip("triton.backends.nvidia", reason="this triton has no NVIDIA backend")
    for usage in pdt.offline_compile([(3, 64, "fp32"), (8, 128, "bf16"), (1, 128, "fp16")]):  # no GPU needed
        assert usage["stack_bytes"] == 0 and 0 < usage["registers"] <= 255, usage


def test_cli_on_cpu_runs_the_interpreter_check(capsys, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the CLI times the real kernel there")
    from common.report import parse_json_line

    monkeypatch.setattr(pdt, "offline_compile", lambda shapes: [])  # tested above; keeps this test quick

    assert pdt.main(["--smoke"]) == 0
    out = parse_json_line(capsys.readouterr().out)
    if not pdt.HAS_TRITON:
        assert out["mode"] == "unavailable"
        return
    assert out["mode"] == "interpreter" and out["triton_paged_max_abs_diff"] < 1e-5


@pytest.mark.gpu
@needs_triton
@pytest.mark.parametrize(("ctx_lens", "hkv", "group", "d"), [
    ([2048, 1, 1000, 16, 513, 777, 1024, 31], 3, 3, 64),  # SmolLM2's heads, ragged contexts
    ([4096, 2000, 64, 1], 8, 4, 128),                     # Llama-3-8B's heads
    ([300, 5], 4, 1, 128),                                # no GQA
])
def test_gpu_kernel_equals_the_naive_reference(ctx_lens, hkv, group, d):
    got, ref = _kernel_vs_reference(ctx_lens, 16, hkv, group, d, device="cuda")
    torch.testing.assert_close(got.cpu(), ref, rtol=1e-4, atol=1e-4)  # ref on CPU; fp32 sum orders differ


@pytest.mark.gpu
@needs_triton
def test_gpu_kernel_in_bf16_matches_gather_and_sdpa():
    q, k, v, meta = pdt.make_case([1500, 700, 9, 64], 16, 8, 4, 128, torch.bfloat16, "cuda")
    kf, vf = k.view(-1, 8, 128), v.view(-1, 8, 128)
    ref = paged_attention(q, kf, vf, build_plan(meta, 16, q.device))
    got = paged_attention(q, kf, vf, build_plan(meta, 16, q.device, decode_kernel=pdt.kernel))
    torch.testing.assert_close(got.float(), ref.float(), rtol=2e-2, atol=2e-2)  # both round to bf16 once


@pytest.mark.gpu
@needs_triton
def test_engine_on_cuda_with_the_kernel_gives_the_same_greedy_tokens(tiny_hf_model, monkeypatch):
    from ch04_kvcache.model import LlamaModel
    from ch05_scheduling.sequence import SamplingParams

    prompts = [[5, 9, 17, 3, 44], [7] * 3, list(range(20, 61))]
    params = [SamplingParams(max_tokens=n, ignore_eos=True) for n in (9, 14, 6)]
    model = LlamaModel.from_pretrained(tiny_hf_model[1]).to("cuda")  # fp32: greedy ties stay rare
    _assert_kernel_keeps_the_engine_tokens(model, prompts, params, 64, monkeypatch)


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as exc:
        pdt.main(["--help"])
    assert exc.value.code == 0 and "usage" in capsys.readouterr().out
