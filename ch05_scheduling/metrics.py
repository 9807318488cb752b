"""Serving metrics from finished requests: throughput, TTFT/TPOT/E2E percentiles, goodput (5.1.2, 5.3.4).

Book sections: 5.1.2 服务质量vs吞吐量, 5.1.3 调度器的目标, 5.3.4 性能提升分析.

The same function summarises the simulator's requests and the real engine's (both are
:class:`Sequence` objects with arrival / first-scheduled / first-token / finish times):

* TTFT = first token - arrival; TPOT = (finish - first token) / (outputs - 1); E2E = finish - arrival;
  queueing delay = first scheduled - arrival;
* throughput = generated tokens / (last finish - first arrival);
* goodput (DistServe, Zhong et al. OSDI'24): a request *attains* the SLO when its TTFT and its TPOT are
  both within bounds; ``slo_attainment`` is the fraction that do and ``goodput_rps`` the attained requests
  per second. DistServe's headline number -- the highest arrival rate whose attainment stays >= 90% --
  is :func:`ch05_scheduling.simulator.max_goodput_rate` (it needs many runs, so it lives in the simulator).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ch05_scheduling.sequence import FinishReason, Sequence
from common.bench import summarize


@dataclass(frozen=True, slots=True)
class SLO:
    ttft_s: float = 2.0
    tpot_s: float = 0.2


def request_latencies(seq: Sequence) -> dict[str, float]:
    first = seq.first_token_time if seq.first_token_time is not None else seq.finish_time
    n = seq.num_output_tokens
    return {
        "ttft": first - seq.arrival_time,
        "tpot": (seq.finish_time - first) / (n - 1) if n > 1 else 0.0,
        "e2e": seq.finish_time - seq.arrival_time,
        "queue": (seq.first_scheduled_time or seq.arrival_time) - seq.arrival_time,
    }


def summarize_requests(seqs: Iterable[Sequence], slo: SLO | None = None) -> dict[str, float]:
    """Flat dict: ``throughput_tok_s``, ``ttft_p50`` ... ``e2e_p99``, ``goodput_rps``, ``preemptions``."""
    done = [s for s in seqs if s.finish_time is not None and s.finish_reason is not FinishReason.ABORT]
    if not done:
        raise ValueError("no finished requests to summarise")
    slo = slo or SLO()
    lat = [request_latencies(s) for s in done]
    span = max(s.finish_time for s in done) - min(s.arrival_time for s in done)
    tokens = sum(s.num_output_tokens for s in done)
    out: dict[str, float] = {
        "requests": len(done),
        "duration_s": span,
        "output_tokens": tokens,
        "throughput_tok_s": tokens / span if span > 0 else float("nan"),
        "request_rate_rps": len(done) / span if span > 0 else float("nan"),
    }
    for key in ("ttft", "tpot", "e2e", "queue"):
        for stat, v in summarize([x[key] for x in lat]).items():
            out[f"{key}_{stat}"] = v
    ok = sum(1 for x in lat if x["ttft"] <= slo.ttft_s and x["tpot"] <= slo.tpot_s)
    out["slo_attainment"] = ok / len(done)
    out["goodput_rps"] = ok / span if span > 0 else float("nan")
    out["preemptions"] = sum(s.num_preemptions for s in done)
    return out
