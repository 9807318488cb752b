"""Chapter 9's practical checklist (实战检查清单): which advanced techniques can this machine actually use?

    python -m ch09_advanced.checklist                                  # torch.compile default, no MoE
    python -m ch09_advanced.checklist --compile-mode reduce-overhead --tokens-per-process 200
    python -m ch09_advanced.checklist --moe-model mixtral-8x7b --weight-dtype bf16

Items: the C++ compiler torch.compile's Inductor needs on a CPU, whether the compile mode does anything
here (CUDA graphs need a GPU), whether a process generates enough tokens to pay the compile time back,
Triton (GPU kernels; on a CPU only its interpreter runs them, slowly), which scaled-dot-product-attention
kernels this device has, and, for a mixture-of-experts model, whether *all* experts fit in memory (only
the active ones compute, every one must be resident; ch02's estimator). Exit code 1 on a FAIL.
"""

from __future__ import annotations

import importlib.util
import sys

import torch

from ch02_gpu.estimate import MemoryRequest, estimate
from ch02_gpu.memory import WEIGHT_BITS
from ch02_gpu.vram import load_arch
from ch09_advanced.compile_decode import MODES
from common.checklist import FAIL, OK, WARN, Check, add_checklist_args, report
from common.cli import friendly_errors, make_parser, positive_int
from common.cpp_ext import cpp_toolchain_problem

GIB = 1 << 30
# Defaults from ch09's reference run (compile_decode, 2-core EPYC, embedded model, ``decompose-mm``):
# eager 14.3 tok/s (70 ms/step), 2.29x compiled, 71 s to compile with a cold Inductor cache.
STEP_MS, COMPILE_SPEEDUP, COMPILE_S = 70.0, 2.29, 71.0


def check_compiler(problem: str | None, on_gpu: bool) -> Check:
    if problem is None:
        return Check("compiler", OK, "a C++ compiler is here: Inductor can generate CPU kernels")
    if on_gpu:
        return Check("compiler", WARN, f"no C++ compiler ({problem}): GPU kernels still compile through Triton, "
                     "CPU fallbacks do not", "apt-get install g++.")
    return Check("compiler", FAIL, f"torch.compile on a CPU needs a C++ compiler: {problem}", "apt-get install "
                 "g++ (build-essential), or run without torch.compile.")


def check_compile_mode(mode: str, on_gpu: bool) -> Check:
    if mode == "reduce-overhead" and not on_gpu:
        return Check("compile-mode", WARN, "reduce-overhead adds CUDA graphs: without a GPU it is the default "
                     "mode plus bookkeeping", "use the default mode (or freezing) on a CPU.")
    if mode == "max-autotune" and not on_gpu:
        return Check("compile-mode", WARN, "max-autotune searches GPU kernel configurations: minutes of compile "
                     "for little on a CPU", "use the default mode on a CPU.")
    return Check("compile-mode", OK, f"torch.compile mode {mode!r}")


def check_amortised(tokens_per_process: int, step_s: float, speedup: float, compile_s: float) -> Check:
    saved = tokens_per_process * step_s * (1 - 1 / speedup)
    detail = (f"{tokens_per_process} tokens at {step_s * 1e3:.0f} ms/step and {speedup:g}x from compiling save "
              f"~{saved:.0f} s against ~{compile_s:.0f} s of compile")
    if saved < compile_s:
        return Check("amortised", WARN, detail + ": the process ends before compiling pays off",
                     "compile in long-lived servers only (warm it up at start), or cache compiled artefacts "
                     "(TORCHINDUCTOR_CACHE_DIR).")
    return Check("amortised", OK, detail)


def check_triton(has_triton: bool, on_gpu: bool) -> Check:
    if has_triton and on_gpu:
        return Check("triton", OK, "Triton and a GPU: ch09's kernels run for real")
    if has_triton:
        return Check("triton", WARN, "Triton without a GPU: its kernels run only under TRITON_INTERPRET=1, for "
                     "correctness, not speed", "measure Triton kernels on a GPU machine.")
    return Check("triton", WARN, "no Triton: ch09's Triton kernels are skipped", "pip install triton (Linux; "
                 "ships with CUDA builds of torch).")


def check_sdpa(on_gpu: bool, flash_ok: bool) -> Check:
    if on_gpu:
        if flash_ok:
            return Check("sdpa", OK, "SDPA can use the flash-attention kernel on this GPU")
        return Check("sdpa", WARN, "no flash SDPA kernel on this GPU (pre-Ampere or a build without it)",
                     "expect the memory-efficient or math kernel: more memory at long contexts.")
    return Check("sdpa", OK, "CPU SDPA: torch's fused flash kernel for CPU (fp32/bf16)")


def check_moe_memory(model: str | None, weight_dtype: str, available_bytes: int, where: str) -> Check:
    if model is None:
        return Check("moe-memory", OK, "no mixture-of-experts model given (--moe-model)")
    e = estimate(load_arch(model), MemoryRequest(weight_dtype=weight_dtype, context=4096))
    detail = (f"{model}: {e.params / 1e9:.1f}B parameters resident, {e.active_params / 1e9:.1f}B active per token; "
              f"{e.weights_bytes / GIB:.1f} GiB of weights in {weight_dtype} vs {available_bytes / GIB:.1f} GiB "
              f"{where}")
    if e.weights_bytes > available_bytes:
        return Check("moe-memory", FAIL, detail, "every expert must be resident: quantize (ch06: int4 is ~1/4 "
                     "of bf16), shard experts across GPUs (expert parallelism), or pick a dense model.")
    return Check("moe-memory", OK, detail)


def available_memory(on_gpu: bool) -> tuple[int, str]:
    if on_gpu:
        return torch.cuda.mem_get_info()[0], "free on GPU 0"
    import psutil

    return psutil.virtual_memory().available, "available RAM"


def run_checks(args) -> list[Check]:
    on_gpu = torch.cuda.is_available()
    flash_ok = on_gpu and torch.backends.cuda.flash_sdp_enabled() and torch.cuda.get_device_capability()[0] >= 8
    free, where = available_memory(on_gpu)
    return [
        check_compiler(cpp_toolchain_problem(), on_gpu),
        check_compile_mode(args.compile_mode, on_gpu),
        check_amortised(args.tokens_per_process, args.step_ms / 1e3, args.compile_speedup, args.compile_s),
        check_triton(importlib.util.find_spec("triton") is not None, on_gpu),
        check_sdpa(on_gpu, flash_ok),
        check_moe_memory(args.moe_model, args.weight_dtype, free, where),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch09_advanced.checklist", __doc__)
    parser.add_argument("--compile-mode", default="default", choices=MODES, help="torch.compile mode you plan")
    parser.add_argument("--tokens-per-process", type=positive_int, default=100_000,
                        help="tokens one process generates before it exits")
    parser.add_argument("--step-ms", type=float, default=STEP_MS, help="decode step time before compiling")
    parser.add_argument("--compile-speedup", type=float, default=COMPILE_SPEEDUP, help="step speed-up compiling gives")
    parser.add_argument("--compile-s", type=float, default=COMPILE_S, help="time one compile takes")
    parser.add_argument("--moe-model", default=None, help="a mixture-of-experts preset, e.g. mixtral-8x7b")
    parser.add_argument("--weight-dtype", default="bf16", choices=sorted(WEIGHT_BITS), help="MoE weight format")
    add_checklist_args(parser)
    args = parser.parse_args(argv)
    if args.compile_speedup <= 1:
        parser.error("--compile-speedup must be > 1 (a compile that does not speed up never pays off)")
    with friendly_errors():
        return report("chapter 9 checklist: compile, Triton, attention kernels, MoE memory", run_checks(args),
                      json_only=args.json)


if __name__ == "__main__":
    sys.exit(main())
