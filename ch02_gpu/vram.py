"""VRAM calculator (book section 2.3): how much memory a model needs, and what fits where.

    python -m ch02_gpu.vram --model llama-3-8b --dtype bf16 --context 131072
    python -m ch02_gpu.vram --model llama-3-8b --dtype bf16 --context 8192 --gpu a10g          # 2.3.5
    python -m ch02_gpu.vram --model llama-3-70b --dtype bf16 --context 8192 --tp 2 --gpu h100 --gpu-memory-utilization 0.95
    python -m ch02_gpu.vram --model llama-3-70b --dtype int4 --context 8192 --gpu h100          # 2.3.6
    python -m ch02_gpu.vram --model smollm2-135m --dtype fp32 --kv-cache-space 1                # vLLM-CPU

``--model`` is a preset (smollm2-135m, llama-3-8b, llama-3-70b, mixtral-8x7b, qwen2.5-7b), a Hugging Face
folder or a ``config.json`` path. The breakdown: weights, KV per token and in total (GQA-aware), the
activation peak of one ``--prefill-chunk`` step, runtime overhead (an assumption: ~1 GiB CUDA context +
5%), total. Then the solvers: largest batch at this context, longest context at this batch, which cards
of ch02_gpu/data/gpus.csv fit, and how many KV blocks vLLM would allocate. Every number is a prediction
from the config; ``python -m ch02_gpu.reality`` checks them against measurements.
"""

from __future__ import annotations

from pathlib import Path

from ch02_gpu.estimate import (
    MemoryRequest,
    estimate,
    fitting_gpus,
    max_batch,
    max_context,
    vllm_cpu_kv_capacity,
    vllm_gpu_kv_capacity,
)
from ch02_gpu.gpus import UnknownGPU, find_gpu
from ch02_gpu.memory import KV_BITS, WEIGHT_BITS, Arch, ConfigError
from common.bench import stamp_dict
from common.cli import UsageError, add_common_args, friendly_errors, make_parser, positive_int
from common.loader import EMBEDDED_NAMES, load_config
from common.presets import is_preset, preset_names
from common.report import emit_json, print_table


def gib(n: float) -> float:
    return n / (1 << 30)


def build_parser():
    parser = make_parser("python -m ch02_gpu.vram", __doc__)
    add_common_args(parser, model=True, smoke=True)
    for action in parser._actions:  # the shared --dtype also accepts fp8/int8/int4 here
        if action.dest == "dtype":
            action.choices, action.default = sorted(WEIGHT_BITS), "bf16"
            action.help = "weight dtype; int8/int4 pay a per-group fp16 scale (default: bf16)"
    parser.add_argument("--kv-dtype", default=None, choices=sorted(KV_BITS),
                        help="KV-cache dtype (default: the weight dtype, or bf16 for quantised weights)")
    parser.add_argument("--batch", type=positive_int, default=1, help="concurrent sequences")
    parser.add_argument("--context", type=positive_int, default=4096, help="tokens per sequence")
    parser.add_argument("--prefill-chunk", type=positive_int, default=2048, help="tokens per forward step")
    parser.add_argument("--tp", type=positive_int, default=1, help="tensor-parallel degree (GPUs)")
    parser.add_argument("--group-size", type=positive_int, default=128, help="int4/int8 quantisation group")
    parser.add_argument("--zero-point", action="store_true", help="asymmetric quantisation (fp16 zero per group)")
    parser.add_argument("--gpu", default=None, help="a card from ch02_gpu/data/gpus.csv, e.g. h100, a10g, rtx4090")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vLLM's fraction of memory")
    parser.add_argument("--kv-cache-space", type=positive_int, default=None,
                        help="VLLM_CPU_KVCACHE_SPACE in GiB: predict vLLM-CPU's KV token capacity")
    return parser


def breakdown_rows(e) -> list[dict]:
    rows = [("params", e.params, None), ("active params (compute)", e.active_params, None),
            ("weights", e.weights_bytes, e.weights_bytes), ("KV cache per token", e.kv_bytes_per_token, None),
            ("KV per token if hidden_size were used (wrong)", e.naive_kv_bytes_per_token, None),
            ("KV cache (batch x context)", e.kv_cache_bytes, e.kv_cache_bytes),
            ("activations (one prefill chunk)", e.activation_bytes, e.activation_bytes),
            ("runtime overhead (assumed)", e.overhead_bytes, e.overhead_bytes),
            ("total (all GPUs)", e.total_bytes, e.total_bytes), ("per GPU", e.per_gpu_bytes, e.per_gpu_bytes)]
    return [{"item": k, "value": v, "GiB": round(gib(b), 3) if b is not None else ""} for k, v, b in rows]


def load_arch(spec: str) -> Arch:
    """The architecture of a preset, a folder, a config.json or a hub id (``owner/name``)."""
    if not (is_preset(spec) or "/" in spec or Path(spec).expanduser().exists() or spec.lower() in EMBEDDED_NAMES):
        raise UsageError(f"--model {spec!r} is neither a preset ({', '.join(preset_names())}), a local "
                         "folder or config.json, nor a hub id of the form owner/name.")
    try:
        return Arch.from_config(load_config(spec), name=spec)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def run(args) -> dict:
    if not 0 < args.gpu_memory_utilization <= 1:
        raise UsageError("--gpu-memory-utilization must be in (0, 1]")
    try:
        arch = load_arch(args.model)
        req = MemoryRequest(weight_dtype=args.dtype, kv_dtype=args.kv_dtype, batch=args.batch,
                            context=args.context, prefill_chunk=args.prefill_chunk, tp=args.tp,
                            group_size=args.group_size, zero_point=args.zero_point)
        e = estimate(arch, req)
        gpu = find_gpu(args.gpu) if args.gpu else None
    except (ConfigError, UnknownGPU) as exc:
        raise UsageError(str(exc)) from None
    out: dict = dict(e.as_dict())
    out.update(weight_dtype=args.dtype, kv_dtype=req.resolved_kv_dtype, batch=args.batch, context=args.context,
               prefill_chunk=args.prefill_chunk, moe_experts=arch.num_experts)
    if not args.json:
        print_table(breakdown_rows(e), title=f"{args.model}: memory breakdown (model-based prediction)")
    if gpu:
        cap = gpu.memory_bytes * args.gpu_memory_utilization
        kv = vllm_gpu_kv_capacity(arch, req, gpu.memory_bytes, args.gpu_memory_utilization)
        out.update(gpu=gpu.name, fits=e.per_gpu_bytes <= cap, max_batch=max_batch(arch, req, cap),
                   max_context=max_context(arch, req, cap), vllm_kv_blocks=kv.num_blocks,
                   vllm_kv_tokens=kv.tokens)
        if not args.json:
            print_table([{"question": q, "answer": a} for q, a in [
                (f"fits on one {gpu.name} ({gpu.memory_gb:g} GB x {args.gpu_memory_utilization})?", out["fits"]),
                (f"max batch at context {args.context}", out["max_batch"]),
                (f"max context at batch {args.batch}", out["max_context"]),
                (f"vLLM KV blocks of {kv.block_size} tokens", kv.num_blocks),
                ("vLLM KV capacity, tokens", kv.tokens)]], title=f"solver on {gpu.name} (tp={args.tp})")
    else:
        fits = fitting_gpus(arch, req, args.gpu_memory_utilization)
        out["fitting_gpus"] = [f.gpu for f in fits if f.fits]
        if not args.json:
            print_table([{"gpu": f.gpu, "memory GB": f.memory_gb, "needed GB/GPU": round(f.needed_gb, 2),
                          "fits": f.fits, f"max batch @ {args.context}": f.max_batch} for f in fits],
                        title=f"which GPUs fit (tp={args.tp}, {args.gpu_memory_utilization:.0%} of memory)")
    if args.kv_cache_space:
        cpu = vllm_cpu_kv_capacity(arch, req.resolved_kv_dtype, args.kv_cache_space)
        out.update(vllm_cpu_kv_blocks=cpu.num_blocks, vllm_cpu_kv_tokens=cpu.tokens)
        if not args.json:
            print(f"vLLM-CPU with VLLM_CPU_KVCACHE_SPACE={args.kv_cache_space}: {cpu.num_blocks} blocks x "
                  f"{cpu.block_size} = {cpu.tokens:,} KV tokens (prediction)")
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with friendly_errors():
        out = run(args)
        emit_json({**out, "prediction": "model-based", "hardware": stamp_dict(dtype=args.dtype)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
