"""Roofline and bottleneck diagnosis (book sections 2.5 and 2.2.4).

    python -m ch02_gpu.roofline                           # measure this machine, embedded model, batch 1..64
    python -m ch02_gpu.roofline --smoke                   # batch 1, 4; a few steps
    python -m ch02_gpu.roofline --model llama-3-8b --gpu h100 --batch 1 8 64 256   # analytic, any card

Measured mode: the read bandwidth (``common.bench.measure_read_bandwidth``) and fp32 matmul FLOP/s of
this machine give its roofs; the embedded model then decodes with the ``transformers`` KV cache at each
batch size, and tokens/s is plotted against the roofline bound (PNG in reports/ch02/). MBU = bytes the
step must read x steps/s / measured bandwidth. Analytic mode: a card from ch02_gpu/data/gpus.csv and
any config give intensity, bound kind and the lower bound on time per token -- predictions, labelled.
The diagnosis flow of 2.5.2 is printed as a checklist with this run's answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ch02_gpu.gpus import UnknownGPU, find_gpu
from ch02_gpu.intensity import StepCost, step_cost
from ch02_gpu.memory import Arch
from common.bench import measure_read_bandwidth, stamp_dict, time_fn
from common.cli import UsageError, add_common_args, friendly_errors, make_parser, positive_int
from common.loader import load_config, load_hf_model
from common.paths import reports_dir
from common.report import emit_json, print_table, save_plot

OVERHEAD_BOUND = 0.3  # below 30% of the nearest roof, the roofs are not what limits you


def measure_matmul_flops(n: int = 2048, device: str = "cpu", dtype: torch.dtype = torch.float32,
                         repeats: int = 3) -> float:
    """Achieved FLOP/s of an ``n x n`` matmul (2 n^3 FLOPs), best of ``repeats`` after warm-up."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = time_fn(lambda: a @ b, repeats=repeats, warmup=1, device=device)
    return 2 * n**3 / t.best


@dataclass(frozen=True, slots=True)
class DecodePoint:
    batch: int
    context: int
    step_s: float
    tokens_per_s: float
    cost: StepCost
    bound_tokens_per_s: float
    mbu: float
    mfu: float


def measure_decode(model, a: Arch, batches: list[int], prompt_len: int, steps: int, bandwidth: float,
                   peak: float) -> list[DecodePoint]:
    """Decode ``steps`` tokens per batch size with the transformers KV cache; one warm-up step each."""
    import inspect

    from transformers import DynamicCache

    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    points = []
    for b in batches:
        torch.manual_seed(b)
        cache = DynamicCache(config=model.config)
        ids = torch.randint(0, a.vocab_size, (b, prompt_len))  # (B, P)
        with torch.inference_mode():
            logits = model(input_ids=ids, **{cache_kw: cache}, use_cache=True, logits_to_keep=1).logits
        state = {"next": logits[:, -1:].argmax(-1)}  # (B, 1)

        def step(state: dict = state, cache=cache) -> None:
            with torch.inference_mode():
                out = model(input_ids=state["next"], **{cache_kw: cache}, use_cache=True)
            state["next"] = out.logits[:, -1:].argmax(-1)

        t = time_fn(step, repeats=steps, warmup=1)
        ctx = prompt_len + 1 + steps // 2  # mean context over the timed steps
        cost = step_cost(a, b, 1, ctx, weight_dtype="fp32")
        bytes_per_s = cost.bytes / t.median
        points.append(DecodePoint(b, ctx, t.median, b / t.median, cost, cost.tokens_per_s_bound(peak, bandwidth),
                                  bytes_per_s / bandwidth, cost.flops / t.median / peak))
    return points


def verdict(p: DecodePoint, bandwidth: float, peak: float) -> str:
    """Which of the three bottlenecks of 2.5.1 limits this point: memory, compute or overhead."""
    if p.tokens_per_s / p.bound_tokens_per_s < OVERHEAD_BOUND:
        return "overhead-bound"
    return f"{p.cost.bound_kind(peak, bandwidth)}-bound"


def diagnose(points: list[DecodePoint], bandwidth: float, peak: float) -> list[str]:
    """The 2.5.2 flow, answered with this run's numbers."""
    ridge = peak / bandwidth
    p1 = points[0]
    lines = [f"1. Measure first: batch {p1.batch} decodes {p1.tokens_per_s:.1f} tok/s "
             f"({p1.step_s * 1e3:.1f} ms per step).",
             f"2. Intensity vs ridge: decode at batch {p1.batch} does {p1.cost.intensity:.2f} FLOP/byte; this "
             f"machine's ridge is {ridge:.1f} FLOP/byte -> {p1.cost.bound_kind(peak, bandwidth)}-bound in theory."]
    for p in points:
        frac = p.tokens_per_s / p.bound_tokens_per_s
        lines.append(f"3. batch {p.batch:>3}: {frac:.0%} of the roofline bound, MBU {p.mbu:.0%}, "
                     f"MFU {p.mfu:.0%} -> {verdict(p, bandwidth, peak)}")
    lines += ["4. Memory-bound and MBU high: batch more, quantise weights/KV (fewer bytes per token).",
              "5. Overhead-bound: profile the timeline (torch.profiler, nsys); fewer launches (CUDA graphs, "
              "torch.compile), bigger batches.",
              "6. Compute-bound: lower-precision math (FP8), better kernels, more GPUs (tensor parallel)."]
    return lines


def analytic(args, a: Arch) -> dict:
    try:
        gpu = find_gpu(args.gpu)
    except UnknownGPU as exc:
        raise UsageError(str(exc)) from None
    dt = args.dtype if args.dtype in ("fp16", "bf16", "fp32") else "bf16"  # auto -> bf16 on a GPU
    peak, bw = gpu.flops(dt), gpu.bandwidth_bytes_per_s
    rows = []
    for b in args.batch:
        for phase, new in (("decode", 1), ("prefill", args.prompt_len)):
            c = step_cost(a, b, new, args.context if phase == "decode" else args.prompt_len, weight_dtype=dt)
            rows.append({"phase": phase, "batch": b, "FLOP/byte": round(c.intensity, 2),
                         "bound": c.bound_kind(peak, bw), "ms/step >=": c.time_bound(peak, bw) * 1e3,
                         "tok/s <=": c.tokens_per_s_bound(peak, bw)})
    if not args.json:
        print_table(rows, title=f"{args.model} on {gpu.name} ({dt}): roofline prediction, model-based "
                               f"(ridge {peak / bw:.0f} FLOP/byte)")
    return {"gpu": gpu.name, "ridge_flop_per_byte": peak / bw, "rows": rows, "prediction": "model-based"}


def measured(args, a: Arch) -> dict:
    batches = [1, 2] if args.smoke else args.batch
    steps = 2 if args.smoke else args.steps
    prompt = min(args.prompt_len, 8) if args.smoke else args.prompt_len
    bandwidth = measure_read_bandwidth(megabytes=64 if args.smoke else 256)
    peak = measure_matmul_flops(1024 if args.smoke else 2048)
    model = load_hf_model(args.model, dtype=torch.float32)
    points = measure_decode(model, a, batches, prompt, steps, bandwidth, peak)
    rows = [{"batch": p.batch, "tok/s": p.tokens_per_s, "ms/step": p.step_s * 1e3,
             "bound tok/s": p.bound_tokens_per_s, "FLOP/byte": round(p.cost.intensity, 2),
             "MBU": f"{p.mbu:.0%}", "MFU": f"{p.mfu:.0%}"} for p in points]
    xs = [p.batch for p in points]
    mem_roof = [p.batch * bandwidth / p.cost.bytes for p in points]
    comp_roof = [p.batch * peak / p.cost.flops for p in points]
    png = save_plot(reports_dir("ch02") / "roofline_decode.png",
                    {"measured": (xs, [p.tokens_per_s for p in points]),
                     "roofline bound": (xs, [p.bound_tokens_per_s for p in points]),
                     "memory roof": (xs, mem_roof), "compute roof": (xs, comp_roof)},
                    title=f"decode, {args.model} fp32 on this CPU", xlabel="batch size",
                    ylabel="tokens/s", logx=True, logy=True)
    checklist = diagnose(points, bandwidth, peak)
    if not args.json:
        print(f"measured: read bandwidth {bandwidth / 1e9:.1f} GB/s, fp32 matmul {peak / 1e9:.1f} GFLOP/s")
        print_table(rows, title="decode with the transformers KV cache, measured vs roofline")
        print("diagnosis (2.5.2):")
        print("\n".join("  " + line for line in checklist))
        print(f"plot: {png}")
    return {"bandwidth_bytes_per_s": bandwidth, "matmul_flops": peak, "plot": str(png),
            "points": [{"batch": p.batch, "tokens_per_s": p.tokens_per_s, "bound_tokens_per_s": p.bound_tokens_per_s,
                        "mbu": p.mbu, "mfu": p.mfu, "bytes_per_step": p.cost.bytes} for p in points],
            "bottleneck_batch1": verdict(points[0], bandwidth, peak), "mbu_batch1": points[0].mbu,
            "ridge_flop_per_byte": peak / bandwidth}


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch02_gpu.roofline", __doc__)
    add_common_args(parser, model=True, smoke=True)
    parser.add_argument("--batch", type=positive_int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--steps", type=positive_int, default=8, help="timed decode steps per batch size")
    parser.add_argument("--prompt-len", type=positive_int, default=32, help="prompt tokens (prefill)")
    parser.add_argument("--context", type=positive_int, default=4096, help="analytic mode: decode context")
    parser.add_argument("--gpu", default=None, help="analytic mode on this card (no measurement)")
    args = parser.parse_args(argv)
    with friendly_errors():
        a = Arch.from_config(load_config(args.model), name=args.model)
        out = analytic(args, a) if args.gpu else measured(args, a)
        dtype = "fp32" if not args.gpu else (args.dtype if args.dtype != "auto" else "bf16")
        emit_json({**out, "model": args.model, "hardware": stamp_dict(dtype=dtype)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
