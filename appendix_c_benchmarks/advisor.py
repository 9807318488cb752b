"""1.5: the quick evaluation matrix and the technology-choice decision tree, as a small CLI.

Describe your workload with flags (or answer the questions when run in a terminal without flags) and it
recommends which optimisation to try first, citing the chapter, with the reason.

    python -m appendix_c_benchmarks.advisor --workload chat --memory-bound yes --latency-slo strict
    python -m appendix_c_benchmarks.advisor            # asks the questions interactively
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from common.cli import make_parser
from common.report import emit_json, print_table

# 1.5.1 the quick evaluation matrix: effort and typical effect of each direction (qualitative, the
# book's framing); the measured effect on your machine is in appendix C's report.
MATRIX = (
    ("KV cache + paged memory", "ch04", "low (engines do it)", "removes quadratic recompute; more concurrent requests"),
    ("continuous batching / scheduling", "ch05", "low (engine setting)", "throughput under load; tail latency"),
    ("quantization (weights, KV)", "ch06", "medium", "memory and bandwidth per token; larger batches"),
    ("speculative decoding", "ch07", "medium", "latency at small batch; no gain when batches are large"),
    ("production tuning and scaling", "ch08", "high", "cost per token at the fleet level; reliability"),
    ("kernels, compile, MoE", "ch09", "high", "the last constant factor; model-specific"),
)


@dataclass(frozen=True)
class Workload:
    workload: str  # chat | batch | mixed
    memory_bound: bool  # weights + KV close to the GPU's memory
    latency_slo: str  # strict | relaxed
    typical_batch: int
    input_grounded: bool  # outputs copy from the input (summaries, code edits, RAG)
    accuracy_sensitive: bool


@dataclass(frozen=True)
class Advice:
    priority: int
    action: str
    chapter: str
    why: str


def recommend(w: Workload) -> list[Advice]:
    """1.5.2 the decision tree, top to bottom; the first matching branches come first."""
    out: list[Advice] = []

    def add(action: str, chapter: str, why: str) -> None:
        out.append(Advice(len(out) + 1, action, chapter, why))

    add("serve with an engine that has paged KV cache and continuous batching (vLLM or ch05's engine)",
        "ch04, ch05", "every other optimisation assumes it; it is the largest single win under load")
    if w.memory_bound:
        if w.accuracy_sensitive:
            add("INT8 weights or FP8, and INT8/FP8 KV cache; gate on perplexity", "ch06",
                "halves bytes per token; check the perplexity gate of ch06 compare on your model")
        else:
            add("4-bit weights (GPTQ/AWQ, group 128 where it divides), INT8 KV", "ch06",
                "quarter of the weight memory: more room for KV, larger batches")
    if w.latency_slo == "strict" and w.typical_batch <= 8:
        if w.input_grounded:
            add("prompt-lookup (n-gram) speculative decoding", "ch07", "no draft model; accepts long copied spans")
        else:
            add("speculative decoding with a draft model or EAGLE-style head", "ch07",
                "decode is memory-bound at small batch; verification is nearly free")
    if w.workload in {"chat", "mixed"}:
        add("tune max_num_seqs / max_num_batched_tokens, chunked prefill, priority for interactive traffic",
            "ch05, ch08", "TTFT SLOs are met by scheduling, not by faster kernels")
    if w.workload == "batch":
        add("maximise batch size (throughput mode), offline scheduling, spot instances", "ch05, ch08",
            "cost per token falls with batch until compute-bound")
    add("monitor TTFT/TPOT/KV usage and cost per token; autoscale on queue depth", "ch08",
        "you cannot keep savings you do not measure")
    if w.typical_batch >= 32:
        add("torch.compile / CUDA graphs and fused kernels", "ch09", "launch overhead dominates small steps")
    return out


def _ask(question: str, choices: tuple[str, ...]) -> str:
    while True:
        answer = input(f"{question} [{'/'.join(choices)}]: ").strip().lower()
        if answer in choices:
            return answer
        print(f"please answer one of: {', '.join(choices)}")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m appendix_c_benchmarks.advisor", __doc__)
    parser.add_argument("--workload", choices=("chat", "batch", "mixed"))
    parser.add_argument("--memory-bound", choices=("yes", "no"))
    parser.add_argument("--latency-slo", choices=("strict", "relaxed"))
    parser.add_argument("--typical-batch", type=int, default=None)
    parser.add_argument("--input-grounded", choices=("yes", "no"), default="no")
    parser.add_argument("--accuracy-sensitive", choices=("yes", "no"), default="no")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    if args.workload is None and sys.stdin.isatty():
        args.workload = _ask("workload", ("chat", "batch", "mixed"))
        args.memory_bound = _ask("do weights + KV cache nearly fill GPU memory?", ("yes", "no"))
        args.latency_slo = _ask("latency SLO", ("strict", "relaxed"))
        args.typical_batch = int(_ask("typical concurrent requests", ("1", "8", "32", "128")))
        args.input_grounded = _ask("do outputs copy from the input (summaries, code edits, RAG)?", ("yes", "no"))
        args.accuracy_sensitive = _ask("is a 1% quality change unacceptable?", ("yes", "no"))
    missing = [f for f in ("workload", "memory_bound", "latency_slo") if getattr(args, f) is None]
    if missing:
        parser.error("describe the workload: " + ", ".join("--" + m.replace("_", "-") for m in missing))
    if args.typical_batch is not None and args.typical_batch < 1:
        parser.error("--typical-batch must be at least 1")
    w = Workload(args.workload, args.memory_bound == "yes", args.latency_slo, args.typical_batch or 8,
                 args.input_grounded == "yes", args.accuracy_sensitive == "yes")
    advice = recommend(w)
    if not args.json:
        print_table([{"direction": d, "chapter": c, "effort": e, "typical effect": t} for d, c, e, t in MATRIX],
                    title="1.5.1 quick evaluation matrix (qualitative; measured effects: make bench)")
        print()
        print_table([{"#": a.priority, "try": a.action, "chapter": a.chapter, "why": a.why} for a in advice],
                    title="1.5.2 what to try first for this workload")
    emit_json({"workload": w.__dict__, "advice": [a.__dict__ for a in advice]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
