"""1.3.1-1.3.2: how optimisations multiply, with each factor measured here and named by its report key.

Cost per token is price / throughput, so a technique that multiplies throughput (or the request rate a
machine sustains at a latency target) by ``f`` divides the cost by ``f``, and independent techniques
multiply: ``f1 x f2 x ...``. The product is an upper bound: each factor was measured against its own
baseline on its own workload, and they multiply only where each removes a different bottleneck. So the
table also shows the one stack measured end to end (our engine against ``transformers``) and the
quoted industry figures (labelled, from :mod:`ch01_economics.sources`) beside the measured ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ch01_economics.measured import Figure, Report, figure


@dataclass(frozen=True)
class Factor:
    technique: str
    chapter: str
    keys: tuple[str, ...]
    value: float | None
    in_product: bool
    why: str


def _quant_speed(report: Report) -> tuple[Figure, Figure]:
    return (figure(report, "ch06_quantization.methods.int4 g64 GPTQ.tok_s"),
            figure(report, "ch06_quantization.methods.bf16.tok_s"))


def factors(report: Report) -> list[Factor]:
    kv = figure(report, "ch04_kvcache.speedup_kv_cache")
    slo = figure(report, "ch05_rate_slo.continuous_vs_static_rate_at_slo")
    kern = figure(report, "ch09_advanced.engine_kernel_speedup")
    spec = figure(report, "ch07_speculative.speedup_prompt_lookup")
    q4, bf16 = _quant_speed(report)
    q_ratio = q4.value / bf16.value if q4.measured and bf16.measured and bf16.value else None
    q_gain = q_ratio is not None and q_ratio > 1
    return [
        Factor("KV cache instead of recomputing the prefix", "4", (kv.key,), kv.value, kv.measured,
               "decode tokens/s, 256 new tokens"),
        Factor("continuous batching at a p90 latency target", "5", (slo.key,), slo.value, slo.measured,
               "request rate sustained at the same TTFT/TPOT target vs static batches"),
        Factor("C++ paged decode operator in the engine", "9", (kern.key,), kern.value, kern.measured,
               "engine tokens/s with vs without the operator"),
        Factor("speculative decoding (prompt lookup)", "7", (spec.key,), spec.value, spec.measured,
               "batch-1 decode on a prompt the output copies from: workload-dependent"),
        Factor("int4 weights (GPTQ g64) vs bf16", "6", (q4.key, bf16.key), q_ratio, q_gain,
               ("a speed-up here" if q_gain else
                "left out of the product: on this machine int4 decodes slower than bf16 (it saves memory, "
                "not time, without a 4-bit kernel)") if q_ratio is not None else "not measured"),
    ]


@dataclass(frozen=True)
class Stack:
    product: float | None
    cost_fraction: float | None  # 1 / product
    end_to_end: Figure           # our engine vs transformers, measured in one run
    missing: tuple[str, ...]     # keys of factors that were not measured (left out of the product)


def stack(report: Report) -> Stack:
    fs = factors(report)
    used = [f.value for f in fs if f.in_product and f.value is not None]
    missing = tuple(k for f in fs if f.value is None for k in f.keys)
    product = math.prod(used) if used else None
    return Stack(product, 1 / product if product else None, figure(report, "ch05_scheduling.engine_vs_hf"), missing)


def cost_decline_pct(factor: float) -> float:
    """A throughput factor as the percentage by which it cuts the cost of a token."""
    if factor <= 0:
        raise ValueError("factor must be positive")
    return 100.0 * (1.0 - 1.0 / factor)


def factor_for_decline(pct: float) -> float:
    """The throughput factor a cost decline of ``pct`` percent needs (86% -> 7.1x)."""
    if not 0 <= pct < 100:
        raise ValueError("pct must be in [0, 100)")
    return 1.0 / (1.0 - pct / 100.0)
