"""Quantization-aware scheduling, measured (book 6.7.3): one memory budget, smaller weights, more KV.

An inference server gets a fixed amount of memory; whatever the weights do not take becomes KV blocks,
and KV blocks decide how many sequences run at once. ``advanced.py`` computes that trade for
Llama-3-8B on GPUs with ch02's formulas; this module measures it on the embedded model with chapter 5's
engine: for each weight format, the same budget (weights + KV pool), the KV pool sized to what is left,
the same ShareGPT trace, and the engine's own counts: KV blocks, the most sequences it ran in one step,
preemptions, and output tokens per second.

On a GPU the int8/int4 kernels are at least as fast as fp16, so the larger batch is pure gain. On this
CPU our weight-only linears dequantize the whole weight on every call (ch06's ``QuantLinear``), which
costs more than fp32's GEMM at small batches: the measured throughput is the net of a larger batch and
a slower step, and the table says which wins here. All variants run the same engine code (models are
passed in, so none is prepacked and none uses the C++ decode operator).

    python -m ch06_quantization.qa_scheduling               # fp32 vs int8 vs int4 g64 at one budget
    python -m ch06_quantization.qa_scheduling --smoke       # tiny trace
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn

from ch06_quantization.evaluate import weight_bytes
from ch06_quantization.rtn import QuantSpec, quantize_model_rtn
from common.cli import UsageError

MiB = 2**20
FORMATS = {"fp32": None, "int8 per-channel RTN": QuantSpec(8, "channel"), "int4 g64 RTN": QuantSpec(4, "group", 64)}


@dataclass
class BudgetRow:
    format: str
    weights_mib: float
    kv_mib: float
    kv_blocks: int
    max_running_seqs: int   # the most sequences one engine step held
    mean_running_seqs: float  # sequences per step, averaged over the run's steps
    preemptions: int
    output_tokens: int
    tok_s: float


def quantized(model: nn.Module, spec: QuantSpec | None) -> nn.Module:
    """A copy of ``model`` with its decoder linears RTN-quantized (None = the fp32 model itself)."""
    return model if spec is None else quantize_model_rtn(copy.deepcopy(model), spec).eval()


def run_at_budget(name: str, model: nn.Module, tokenizer, trace: list, budget_mib: float,
                  max_num_seqs: int = 64) -> BudgetRow:
    """Serve ``trace`` with ch05's engine whose KV pool is ``budget_mib`` minus the model's weights."""
    from ch05_scheduling.bench import engine_run
    from ch05_scheduling.engine import EngineConfig, LLMEngine

    block_size = 16
    w_bytes = weight_bytes(model)
    kv_bytes = budget_mib * MiB - w_bytes
    per_block = int(model.config.kv_bytes_per_token(next(model.parameters()).element_size())) * block_size
    if kv_bytes < per_block:
        raise UsageError(f"a budget of {budget_mib:.0f} MiB does not hold the {name} weights "
                         f"({w_bytes / MiB:.0f} MiB) plus a KV pool; raise --budget-mib")
    blocks = int(kv_bytes // per_block)  # every byte the weights leave becomes KV blocks
    engine = LLMEngine(EngineConfig(num_blocks=blocks, block_size=block_size, max_num_seqs=max_num_seqs,
                                    max_model_len=2048, enable_prefix_caching=False),
                       model=model, tokenizer=tokenizer)
    metrics, seqs, steps = engine_run(engine, trace, "continuous")
    return BudgetRow(name, w_bytes / MiB, kv_bytes / MiB, blocks,
                     max(s.features.num_seqs for s in steps),
                     sum(s.features.num_seqs for s in steps) / len(steps), int(metrics["preemptions"]),
                     int(metrics["output_tokens"]), metrics["throughput_tok_s"])


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.model import LlamaModel
    from ch05_scheduling.workload import sharegpt_trace
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int, seed_everything
    from common.loader import load_tokenizer
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch06_quantization.qa_scheduling", __doc__)
    add_common_args(parser)
    parser.add_argument("--budget-mib", type=float, default=600.0,
                        help="weights + KV pool (fp32 weights of the embedded model take ~513 MiB)")
    parser.add_argument("--n", type=positive_int, default=24, help="ShareGPT requests")
    parser.add_argument("--max-output", type=positive_int, default=64, help="output tokens per request")
    parser.add_argument("--max-prompt", type=positive_int, default=512, help="longest prompt kept")
    args = parser.parse_args(argv)
    with friendly_errors():
        seed_everything(args.seed)
        base = LlamaModel.from_pretrained(args.model, load_format=args.load_format)
        tok = load_tokenizer(args.model)
        n, out_len = (6, 8) if args.smoke else (args.n, args.max_output)
        trace = sharegpt_trace(tok, n, args.seed, max_output=out_len, max_prompt=args.max_prompt)
        rows = [run_at_budget(name, quantized(base, spec), tok, trace, args.budget_mib)
                for name, spec in FORMATS.items()]
        if not args.json:
            print_table([vars(r) for r in rows], title=f"one memory budget of {args.budget_mib:.0f} MiB "
                        f"(weights + KV), {n} ShareGPT requests, outputs {out_len}, ch05 engine", floatfmt=".3g")
        fp32 = rows[0]
        emit_json({"benchmark": "ch06.qa_scheduling", "budget_mib": args.budget_mib,
                   "rows": [vars(r) for r in rows],
                   "batch_gain": {r.format: r.mean_running_seqs / fp32.mean_running_seqs for r in rows},
                   "throughput_gain": {r.format: r.tok_s / fp32.tok_s for r in rows},
                   "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
