"""Chapter 6's practical checklist (实战检查清单): will this quantization be accurate and fast on this CPU?

    python -m ch06_quantization.checklist                                   # int4 g64 GPTQ, served by our code
    python -m ch06_quantization.checklist --method rtn --bits 4 --group-size 0
    python -m ch06_quantization.checklist --method w8a8 --serve-with vllm

Items, from the CPU's flags and your settings: the SIMD level our C++ kernels run at (``LLMIC_SIMD`` caps
it), integer dot-product instructions (VNNI) for int8 activations, native bf16, the group size (per-tensor
int4 is the accuracy pitfall ch06's pitfalls measure), calibration data for GPTQ/AWQ, and, when vLLM-CPU
serves the checkpoint, whether its kernel exists on this CPU and which dtype it needs
(:mod:`ch06_quantization.vllm_cpu_support`). Exit code 1 on a FAIL.
"""

from __future__ import annotations

import sys

from ch06_quantization.vllm_cpu_support import vllm_cpu_support
from common.checklist import FAIL, OK, WARN, Check, add_checklist_args, report
from common.cli import friendly_errors, make_parser, positive_int
from common.cpu import cpu_flags, has_vnni, native_simd_level, simd_level

METHODS = ("rtn", "gptq", "awq", "w8a8", "bf16")
VLLM_FORMAT = {"gptq": "gptq", "awq": "awq", "rtn": "ct-w4a16", "w8a8": "ct-w8a8"}


def check_simd(level: str, native: str) -> Check:
    if level == "scalar":
        return Check("simd", WARN, f"kernels run scalar (CPU: {native})", "a CPU with AVX2 or AVX-512 runs the "
                     "packed kernels several times faster; unset LLMIC_SIMD if it caps the level.")
    capped = f" (capped from {native} by LLMIC_SIMD)" if level != native else ""
    return Check("simd", OK, f"kernels run at {level}{capped}")


def check_vnni(method: str, vnni: bool) -> Check:
    if method != "w8a8":
        return Check("vnni", OK, "weight-only formats do not need integer dot products")
    if vnni:
        return Check("vnni", OK, "VNNI present: int8 x int8 sums are exact and fast")
    return Check("vnni", WARN, "no VNNI: int8 GEMMs fall back to slower multiply-adds that saturate for large "
                 "activations", "prefer weight-only int8/int4 on this CPU, or a CPU with AVX512_VNNI/AVX_VNNI.")


def check_bf16(method: str, flags: frozenset[str]) -> Check:
    if method != "bf16":
        return Check("bf16", OK, "not serving bf16")
    native = {"avx512_bf16", "amx_bf16"} & flags
    if native:
        return Check("bf16", OK, f"native bf16 ({', '.join(sorted(native))})")
    return Check("bf16", WARN, "no native bf16 instructions: every bf16 matmul converts in software",
                 "bf16 still halves memory; for speed compare with fp32 (python -m ch06_quantization.compare).")


def check_group_size(method: str, bits: int, group_size: int) -> Check:
    if method in ("w8a8", "bf16") or bits >= 8:
        return Check("group-size", OK, f"{bits}-bit per-channel scales are enough")
    if group_size <= 0:
        return Check("group-size", FAIL, f"int{bits} with one scale per row (group size {group_size}): outliers set "
                     "the scale and most weights round to a few levels (perplexity jumps; ch06 pitfalls)",
                     "use --group-size 64 or 128.")
    if group_size > 128:
        return Check("group-size", WARN, f"group size {group_size} > 128 loses accuracy at {bits} bits",
                     "use 64 or 128 (32 costs 0.5 bit per weight more in scales).")
    return Check("group-size", OK, f"group size {group_size}: {32 / group_size:.2f} extra "
                 "bits per weight for fp16 scale + zero")


def check_calibration(method: str, samples: int) -> Check:
    if method not in ("gptq", "awq"):
        return Check("calibration", OK, f"{method} needs no calibration data")
    if samples < 32:
        return Check("calibration", WARN, f"{samples} calibration samples for {method.upper()}",
                     "use 64-128 samples from text like your traffic; too few overfits the error compensation.")
    return Check("calibration", OK, f"{samples} calibration samples for {method.upper()}")


def check_vllm(method: str, serve_with: str, flags: frozenset[str]) -> Check:
    if serve_with != "vllm":
        return Check("vllm-cpu", OK, "served by this repository's kernels (ch06), not vLLM-CPU")
    fmt = VLLM_FORMAT.get(method)
    if fmt is None:
        return Check("vllm-cpu", OK, f"{method} is a plain dtype for vLLM-CPU")
    s = vllm_cpu_support(fmt, flags)
    if not s.runs:
        return Check("vllm-cpu", FAIL, f"{fmt}: {s.reason}", "serve W8A8 (every build has its kernel), use our "
                     "own kernels, or an AVX-512 CPU.")
    return Check("vllm-cpu", OK, f"{fmt} via {s.kernel}, start vLLM with dtype={s.dtype}: {s.reason}")


def run_checks(args, flags: frozenset[str] | None = None) -> list[Check]:
    flags = cpu_flags() if flags is None else flags
    bits = 8 if args.method == "w8a8" else 16 if args.method == "bf16" else args.bits
    return [
        check_simd(simd_level(flags), native_simd_level(flags)),
        check_vnni(args.method, has_vnni(flags)),
        check_bf16(args.method, flags),
        check_group_size(args.method, bits, args.group_size),
        check_calibration(args.method, args.calib_samples),
        check_vllm(args.method, args.serve_with, flags),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch06_quantization.checklist", __doc__)
    parser.add_argument("--method", default="gptq", choices=METHODS, help="quantization method")
    parser.add_argument("--bits", type=int, default=4, choices=(4, 8), help="weight bits (rtn/gptq/awq)")
    parser.add_argument("--group-size", type=int, default=64, help="weights per scale; 0 = one per row")
    parser.add_argument("--calib-samples", type=positive_int, default=128, help="GPTQ/AWQ calibration samples")
    parser.add_argument("--serve-with", default="ours", choices=("ours", "vllm"), help="who runs the checkpoint")
    add_checklist_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        return report("chapter 6 checklist: kernels, instructions, group size, calibration, vLLM-CPU",
                      run_checks(args), json_only=args.json)


if __name__ == "__main__":
    sys.exit(main())
