"""vllm_cpu_support: which of our checkpoints vLLM-CPU runs on a CPU, decided from the flags alone."""

from __future__ import annotations

import pytest

from ch06_quantization.vllm_cpu_support import FORMATS, main, vllm_cpu_support

AVX512_BF16 = frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"})
AVX2 = frozenset({"avx2", "fma"})


@pytest.mark.parametrize("fmt", ["gptq", "awq", "ct-w4a16"])
def test_4bit_formats_need_avx512_and_bf16_activations(fmt):
    on_avx512, on_avx2 = vllm_cpu_support(fmt, AVX512_BF16), vllm_cpu_support(fmt, AVX2)
    assert on_avx512.runs and on_avx512.dtype == "bfloat16" and on_avx512.kernel == "cpu_gemm_wna16"
    assert not on_avx2.runs and "AVX-512" in on_avx2.reason


def test_w8a8_runs_everywhere_in_fp32_and_says_whether_sums_are_exact():
    for flags, word in ((AVX512_BF16, "exact"), (AVX2, "saturates")):
        s = vllm_cpu_support("ct-w8a8", flags)
        assert s.runs and s.dtype == "float32" and word in s.reason


def test_unknown_format_is_one_sentence():
    with pytest.raises(ValueError, match="unknown checkpoint format 'nf4'"):
        vllm_cpu_support("nf4")


def test_cli_prints_a_row_per_format(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(f in out for f in FORMATS) and "SIMD level" in out
