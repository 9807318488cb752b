"""GPU specs and cost (book section 2.6): rank cards by predicted cost per 1M output tokens.

    python -m ch02_gpu.specs --model llama-3-8b --dtype bf16 --batch 32
    python -m ch02_gpu.specs --model llama-3-70b --dtype int4 --prompt-tokens 1000 --output-tokens 300
    python -m ch02_gpu.specs --model qwen2.5-7b --price "H100 SXM=2.2" --segment consumer

For each card of ch02_gpu/data/gpus.csv and each tensor-parallel degree (1, 2, 4, 8 GPUs) that holds
the model: the largest batch up to ``--batch`` whose KV cache fits; then the roofline time of one prefill
of ``--prompt-tokens`` per sequence and ``--output-tokens`` decode steps, divided by ``--efficiency``
(the fraction of the roofline a good engine reaches; an assumption, 0.6 by default; the roofline
script measures it on your machine). Cost per 1M output tokens = price per hour x GPUs / tokens per
hour x 1e6; each card shows its cheapest degree. These are **model-based predictions**, not measurements, and prices are a dated snapshot
(see the data file's price_date/price_source columns; override with ``--price``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ch02_gpu.estimate import MemoryRequest, max_batch, per_gpu_bytes
from ch02_gpu.gpus import GPU, UnknownGPU, find_gpu, load_gpus
from ch02_gpu.intensity import step_cost
from ch02_gpu.memory import WEIGHT_BITS, Arch, ConfigError
from common.bench import stamp_dict
from common.cli import UsageError, add_common_args, friendly_errors, make_parser, positive_int
from common.loader import load_config
from common.report import emit_json, print_table

TP_CHOICES = (1, 2, 4, 8)


@dataclass(frozen=True, slots=True)
class Workload:
    weight_dtype: str = "bf16"
    prompt_tokens: int = 512
    output_tokens: int = 256
    max_batch: int = 64
    efficiency: float = 0.6
    utilization: float = 0.9

    def __post_init__(self) -> None:
        if not 0 < self.efficiency <= 1 or not 0 < self.utilization <= 1:
            raise ConfigError("efficiency and utilization must be in (0, 1]")


@dataclass(frozen=True, slots=True)
class Ranked:
    gpu: GPU
    tp: int
    batch: int
    tokens_per_s: float
    usd_per_hour: float
    bound: str

    @property
    def usd_per_million(self) -> float:
        return self.usd_per_hour / (self.tokens_per_s * 3600) * 1e6


def rank_one(a: Arch, g: GPU, w: Workload) -> Ranked | None:
    """The cheapest configuration (number of GPUs, batch) of one card; None when 8 cannot hold the model."""
    context = w.prompt_tokens + w.output_tokens
    best: Ranked | None = None
    for tp in TP_CHOICES:
        req = MemoryRequest(weight_dtype=w.weight_dtype, batch=1, context=context, tp=tp)
        cap = g.memory_bytes * w.utilization
        if per_gpu_bytes(a, req) > cap:
            continue
        batch = min(w.max_batch, max_batch(a, req, cap, limit=w.max_batch))
        compute_dtype = "fp8" if w.weight_dtype == "fp8" else "bf16"
        peak, bw = g.flops(compute_dtype) * tp, g.bandwidth_bytes_per_s * tp  # ideal tensor parallelism
        decode = step_cost(a, batch, 1, w.prompt_tokens + w.output_tokens // 2, weight_dtype=w.weight_dtype)
        prefill = step_cost(a, batch, w.prompt_tokens, w.prompt_tokens, weight_dtype=w.weight_dtype)
        seconds = (prefill.time_bound(peak, bw) + w.output_tokens * decode.time_bound(peak, bw)) / w.efficiency
        r = Ranked(g, tp, batch, batch * w.output_tokens / seconds, g.price_usd_per_hour * tp,
                   decode.bound_kind(peak, bw))
        if best is None or r.usd_per_million < best.usd_per_million:
            best = r
    return best


def rank(a: Arch, w: Workload, gpus: list[GPU]) -> tuple[list[Ranked], list[str]]:
    """Cards that can run the model, cheapest per output token first; and the names that cannot."""
    ranked, too_small = [], []
    for g in gpus:
        r = rank_one(a, g, w)
        (ranked.append(r) if r else too_small.append(g.name))
    return sorted(ranked, key=lambda r: r.usd_per_million), too_small


def apply_prices(gpus: list[GPU], overrides: list[str]) -> list[GPU]:
    """``NAME=USD`` overrides of the hourly price."""
    out = list(gpus)
    for item in overrides:
        name, _, value = item.partition("=")
        try:
            g = find_gpu(name, out)
            price = float(value)
        except (UnknownGPU, ValueError):
            raise UsageError(f"--price wants NAME=USD with a known card, got {item!r}") from None
        out[out.index(g)] = replace(g, price_usd_per_hour=price, price_date="user", price_source="--price")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch02_gpu.specs", __doc__)
    add_common_args(parser, model=True, smoke=True)
    for action in parser._actions:  # the shared --dtype also accepts fp8/int8/int4 here
        if action.dest == "dtype":
            action.choices, action.default = sorted(WEIGHT_BITS), "bf16"
    parser.add_argument("--batch", type=positive_int, default=64, help="largest batch to consider")
    parser.add_argument("--prompt-tokens", type=positive_int, default=512)
    parser.add_argument("--output-tokens", type=positive_int, default=256)
    parser.add_argument("--efficiency", type=float, default=0.6, help="fraction of the roofline reached")
    parser.add_argument("--segment", choices=("all", "consumer", "datacenter"), default="all")
    parser.add_argument("--price", action="append", default=[], help="override a price: NAME=USD (repeatable)")
    args = parser.parse_args(argv)
    with friendly_errors():
        try:
            a = Arch.from_config(load_config(args.model), name=args.model)
            w = Workload(args.dtype, args.prompt_tokens, args.output_tokens, args.batch, args.efficiency)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        gpus = [g for g in apply_prices(load_gpus(), args.price) if args.segment in ("all", g.segment)]
        ranked, too_small = rank(a, w, gpus)
        rows = [{"rank": i + 1, "gpu": r.gpu.name, "GPUs": r.tp, "batch": r.batch, "tok/s": round(r.tokens_per_s),
                 "$/h": round(r.usd_per_hour, 2), "$/1M out": round(r.usd_per_million, 3), "decode": r.bound,
                 "price date": r.gpu.price_date} for i, r in enumerate(ranked)]
        if not args.json:
            print_table(rows, title=f"{args.model} {args.dtype}, prompt {args.prompt_tokens} + output "
                                    f"{args.output_tokens}: predicted (model-based, {args.efficiency:.0%} of "
                                    "roofline), not measured")
            if any(r.tp > 1 for r in ranked):
                print("multi-GPU rows assume ideal tensor parallelism; the all-reduce over PCIe (consumer "
                      "cards, no NVLink) makes them slower in practice.")
            if too_small:
                print(f"cannot hold the model even on 8 cards: {', '.join(too_small)}")
        emit_json({"model": args.model, "prediction": "model-based", "ranking": rows, "too_small": too_small,
                   "hardware": stamp_dict(dtype=args.dtype)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
