"""Chapter 2's practical checklist (实战检查清单): does this machine hold the model, and how fast can it decode?

    python -m ch02_gpu.checklist                                   # the embedded model, fp32, 1 x 2048 tokens
    python -m ch02_gpu.checklist --model llama-3-8b --weight-dtype bf16 --batch 16 --context 8192
    python -m ch02_gpu.checklist --target-tok-s 50                 # is 50 tok/s at batch 1 reachable here?

Items: the accelerator, whether weights + KV cache + activations fit in the memory there is (ch02's
estimator, the same formulas as ``ch02_gpu.vram``), whether the KV formula you use counts KV heads (GQA) or
hidden size, whether the weight dtype is native on this hardware, the thread count against the cores, and
the roofline bound of batch-1 decode (memory bandwidth read here / weight bytes) against your target.
Exit code 1 when an item FAILs.
"""

from __future__ import annotations

import os
import sys

import torch

from ch02_gpu.estimate import MemoryRequest, estimate
from ch02_gpu.memory import WEIGHT_BITS, Arch
from ch02_gpu.vram import load_arch
from common.checklist import FAIL, OK, WARN, Check, add_checklist_args, report
from common.cli import friendly_errors, make_parser, positive_int
from common.cpu import cpu_flags
from common.loader import EMBEDDED

GIB = 1 << 30


def check_accelerator(gpu_name: str | None) -> Check:
    if gpu_name:
        return Check("accelerator", OK, f"CUDA GPU: {gpu_name}")
    return Check("accelerator", WARN, "no CUDA GPU visible: the CPU tier (every chapter runs; GPU-only parts skip)",
                 "for the GPU figures run on a machine with an NVIDIA GPU and a CUDA build of torch.")


def check_memory_fit(need_bytes: int, available_bytes: int, where: str) -> Check:
    share = need_bytes / max(1, available_bytes)
    detail = f"needs {need_bytes / GIB:.2f} GiB of {available_bytes / GIB:.2f} GiB available {where} ({share:.0%})"
    if share > 1:
        return Check("memory-fit", FAIL, detail, "lower --batch or --context, quantize the weights (ch06) or the "
                     "KV cache (ch04 int8), or split the model over several GPUs (tensor parallelism).")
    if share > 0.9:
        return Check("memory-fit", WARN, detail, "under 10% headroom: fragmentation and the allocator's cache "
                     "will push it over; leave 10-20%.")
    return Check("memory-fit", OK, detail)


def check_kv_formula(a: Arch) -> Check:
    if a.num_kv_heads == a.num_heads:
        return Check("kv-formula", OK, f"{a.name} has plain multi-head attention ({a.num_heads} heads): "
                     "2 x layers x hidden x bytes is exact")
    ratio = a.num_heads / a.num_kv_heads
    return Check("kv-formula", OK, f"{a.name} uses GQA ({a.num_kv_heads} KV heads for {a.num_heads} query heads): "
                 f"size the KV cache with num_key_value_heads; hidden_size would overstate it {ratio:.0f}x")


def check_weight_dtype(dtype: str, device: str, flags: frozenset[str], bf16_gpu: bool = True) -> Check:
    if device == "cuda":
        if dtype == "bf16" and not bf16_gpu:
            return Check("dtype", FAIL, "bf16 on a GPU without bf16 support (compute capability < 8.0)",
                         "use --weight-dtype fp16.")
        return Check("dtype", OK, f"{dtype} on the GPU")
    if dtype in ("bf16", "fp16"):
        native = {"avx512_bf16", "amx_bf16"} & flags if dtype == "bf16" else {"avx512_fp16", "amx_fp16"} & flags
        if native:
            return Check("dtype", OK, f"{dtype} on a CPU with {', '.join(sorted(native))}")
        return Check("dtype", WARN, f"{dtype} on a CPU without native {dtype} instructions: converted in software",
                     "fp32 is usually as fast here; 16-bit still halves memory.")
    return Check("dtype", OK, f"{dtype} on the CPU")


def check_threads(torch_threads: int, cores: int, omp_env: str | None) -> Check:
    detail = f"torch uses {torch_threads} threads on {cores} cores" + (f" (OMP_NUM_THREADS={omp_env})" if omp_env else "")
    if torch_threads > cores:
        return Check("threads", WARN, detail, f"oversubscribed threads spin against each other: set "
                     f"OMP_NUM_THREADS={cores} or torch.set_num_threads({cores}).")
    if torch_threads < cores:
        return Check("threads", WARN, detail, "decode is memory-bound and one thread rarely saturates the memory "
                     f"bus: unset OMP_NUM_THREADS or set it to {cores}.")
    return Check("threads", OK, detail)


def check_decode_bound(weight_bytes: int, bandwidth_bytes_s: float, target_tok_s: float | None) -> Check:
    bound = bandwidth_bytes_s / max(1, weight_bytes)
    detail = (f"batch-1 decode reads all {weight_bytes / 1e6:.0f} MB of weights per token: at "
              f"{bandwidth_bytes_s / 1e9:.1f} GB/s measured that is at most {bound:.3g} tok/s")
    if target_tok_s is not None and target_tok_s > bound:
        return Check("decode-bound", FAIL, detail + f", below your target of {target_tok_s:g}",
                     "no kernel beats the roofline: fewer bytes per weight (ch06), batching (ch05) or faster "
                     "memory (a GPU).")
    return Check("decode-bound", OK, detail)


def measured_bandwidth(device: str) -> float:
    from ch02_gpu.hierarchy import read_bandwidth

    return read_bandwidth(256 << 20, device=device, repeats=3, per_call=256 << 20)


def run_checks(args, bandwidth=measured_bandwidth) -> list[Check]:
    import psutil

    arch = load_arch(args.model)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    device = "cuda" if gpu else "cpu"
    req = MemoryRequest(weight_dtype=args.weight_dtype, batch=args.batch, context=args.context)
    est = estimate(arch, req)
    if gpu:
        free, _ = torch.cuda.mem_get_info()
        fit = check_memory_fit(est.per_gpu_bytes, free, "on GPU 0")
    else:
        fit = check_memory_fit(est.total_bytes - est.overhead_bytes, psutil.virtual_memory().available, "in RAM")
    bf16_gpu = torch.cuda.is_bf16_supported() if gpu else True
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    return [
        check_accelerator(gpu),
        fit,
        check_kv_formula(arch),
        check_weight_dtype(args.weight_dtype, device, cpu_flags(), bf16_gpu),
        check_threads(torch.get_num_threads(), cores, os.environ.get("OMP_NUM_THREADS")),
        check_decode_bound(est.weights_bytes, bandwidth(device), args.target_tok_s),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch02_gpu.checklist", __doc__)
    parser.add_argument("--model", default=EMBEDDED, help="preset, local folder or hub id")
    parser.add_argument("--weight-dtype", default="fp32", choices=sorted(WEIGHT_BITS), help="weight format")
    parser.add_argument("--batch", type=positive_int, default=1, help="concurrent sequences")
    parser.add_argument("--context", type=positive_int, default=2048, help="tokens per sequence (prompt + output)")
    parser.add_argument("--target-tok-s", type=float, default=None, help="batch-1 decode speed you need")
    add_checklist_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        return report("chapter 2 checklist: memory, dtype, threads, the decode roofline", run_checks(args),
                      json_only=args.json)


if __name__ == "__main__":
    sys.exit(main())
