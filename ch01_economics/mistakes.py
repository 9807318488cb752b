"""1.4.1: five common mistakes, each priced by a figure this repository measured (key named).

Each mistake is a belief that looks reasonable, the measurement that refutes it, and what believing
it costs. A mistake whose figures the report lacks says "not measured" and which command measures it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ch01_economics.measured import Figure, Report, figure


@dataclass(frozen=True)
class Mistake:
    title: str
    belief: str
    keys: tuple[str, ...]
    measure_with: str  # the command that measures it
    consequence: Callable[[list[Figure]], str]


def _all(fs: list[Figure]) -> bool:
    return all(f.measured for f in fs)


MISTAKES: tuple[Mistake, ...] = (
    Mistake("serving with a generate() loop", "a model server is the model plus an HTTP handler",
            ("ch05_scheduling.engine_vs_hf",), "python -m ch05_scheduling.bench",
            lambda f: f"an engine (paged KV, continuous batching) makes {f[0].value:.2f}x the tokens/s of "
                      f"transformers' generate on the same requests: the loop pays {f[0].value:.2f}x per token"),
    Mistake("judging batching offline", "continuous batching is only a few percent faster",
            ("ch05_scheduling.continuous_vs_static", "ch05_rate_slo.continuous_vs_static_rate_at_slo"),
            "python -m ch05_scheduling.rate_at_slo",
            lambda f: f"offline it is {f[0].value:.2f}x, but at a p90 latency target it sustains "
                      f"{f[1].value:.2f}x the request rate: the offline number undersizes the gain "
                      f"{f[1].value / f[0].value:.1f}x"),
    Mistake("reserving the maximum length per request", "KV memory is allocated once, so it is cheap",
            ("ch04_kvcache.naive_kv_utilization", "ch04_kvcache.paged_kv_utilization"),
            "python -m ch04_kvcache.compare",
            lambda f: f"max-length reservation uses {f[0].value:.0%} of the KV memory it holds, paged blocks "
                      f"{f[1].value:.0%}: {f[1].value / f[0].value:.1f}x more requests fit in the same memory"),
    Mistake("sizing for the peak all day", "enough replicas for the peak is the safe choice",
            ("ch08_autoscale.peak_provisioned_idle_share",), "python -m ch08_production.autoscale",
            lambda f: f"{f[0].value:.0%} of the replica-hours a peak-sized fleet pays for are idle over the "
                      "day's load curve"),
    Mistake("quantizing without measuring", "4-bit weights are 4x cheaper and just as good",
            ("ch06_quantization.methods.int4 g64 GPTQ.ppl_delta_pct",
             "ch06_quantization.methods.int4 g64 GPTQ.tok_s", "ch06_quantization.methods.bf16.tok_s"),
            "python -m ch06_quantization.compare",
            lambda f: f"int4 GPTQ raised perplexity {f[0].value:.1f}% and decoded at {f[1].value / f[2].value:.2f}x "
                      "bf16's tokens/s on this machine: the saving is memory, and only a 4-bit kernel turns it "
                      "into speed"),
)


@dataclass(frozen=True)
class PricedMistake:
    number: int
    title: str
    belief: str
    figures: list[Figure]
    consequence: str


def priced_mistakes(report: Report) -> list[PricedMistake]:
    out = []
    for i, m in enumerate(MISTAKES, 1):
        fs = [figure(report, k) for k in m.keys]
        text = m.consequence(fs) if _all(fs) else f"not measured (run {m.measure_with})"
        out.append(PricedMistake(i, m.title, m.belief, fs, text))
    return out
