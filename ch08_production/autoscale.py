"""How many replicas a TTFT SLO needs at each load, and what a slow scale-up costs (book 8.6.3, 8.3).

Driven by ch05's discrete-event simulator: the real scheduler (continuous batching, chunked prefill,
KV-capacity preemption) with a step-time cost model calibrated on this machine by
``python -m ch05_scheduling.calibrate`` (or ch05's illustrative default; the output says which).
A fleet of N replicas behind a round-robin router is N independent simulations, each fed every N-th
arrival, so the fleet's TTFT p99 is the p99 over all requests.

1. **Replicas vs load**: for each offered load (requests/s), the smallest N whose fleet TTFT p99 meets
   the SLO.
2. **Scale-up lag**: the load steps from ``low`` to ``high`` at t = T; the autoscaler asks at once for
   the replicas ``high`` needs, which start serving after ``lag`` seconds (image pull + weight load +
   warm-up; minutes for a big model on a GPU). Requests that arrive before then are spread over the old
   replicas. The table shows the share of requests that miss the TTFT SLO, per lag.

    python -m ch08_production.autoscale --smoke
    python -m ch08_production.autoscale --slo-ttft 2.0 --loads 0.5,1,2,4 --lags 0,15,60
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass

from ch05_scheduling.scheduler import SchedulerConfig
from ch05_scheduling.simulator import load_cost_model, simulate
from ch05_scheduling.workload import TraceRequest, poisson_arrivals, synthetic_trace, with_arrivals
from common.bench import percentile, stamp_dict
from common.cli import UsageError, add_common_args, friendly_errors, make_parser
from common.report import emit_json, print_table


@dataclass(frozen=True)
class FleetResult:
    replicas: int
    ttft_p99_s: float
    ttft_p50_s: float
    slo_miss: float  # share of requests with TTFT above the SLO


def _ttfts(trace: list[TraceRequest], config: SchedulerConfig, cost) -> list[float]:
    res = simulate(trace, config, "continuous", cost)
    return [s.first_token_time - s.arrival_time for s in res.seqs]


def fleet_ttfts(trace: list[TraceRequest], assignment: list[int], replicas: int, config: SchedulerConfig,
                cost) -> list[float]:
    """TTFT of every request when request i runs on replica ``assignment[i]`` (independent replicas)."""
    out: list[float] = []
    for k in range(replicas):
        part = [r for r, a in zip(trace, assignment, strict=True) if a == k]
        if part:
            out.extend(_ttfts(part, config, cost))
    return out


def evaluate_fleet(trace: list[TraceRequest], replicas: int, slo_ttft: float, config: SchedulerConfig,
                   cost) -> FleetResult:
    ttfts = fleet_ttfts(trace, [i % replicas for i in range(len(trace))], replicas, config, cost)
    return FleetResult(replicas, percentile(ttfts, 99), percentile(ttfts, 50),
                       sum(t > slo_ttft for t in ttfts) / len(ttfts))


def replicas_needed(trace: list[TraceRequest], slo_ttft: float, config: SchedulerConfig, cost,
                    max_replicas: int = 64) -> FleetResult:
    """The smallest fleet whose TTFT p99 meets the SLO (doubling, then bisection)."""
    lo, hi = 0, 1
    best = evaluate_fleet(trace, hi, slo_ttft, config, cost)
    while best.ttft_p99_s > slo_ttft:
        if hi >= max_replicas:
            raise UsageError(f"even {max_replicas} replicas miss the TTFT SLO of {slo_ttft} s; is the SLO "
                             "below a single request's prefill time?")
        lo, hi = hi, min(2 * hi, max_replicas)
        best = evaluate_fleet(trace, hi, slo_ttft, config, cost)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        r = evaluate_fleet(trace, mid, slo_ttft, config, cost)
        lo, hi, best = (lo, mid, r) if r.ttft_p99_s <= slo_ttft else (mid, hi, best)
    return best


def step_trace(low: float, high: float, step_at: float, duration: float, base: list[TraceRequest],
               seed: int) -> list[TraceRequest]:
    """Poisson arrivals at ``low`` req/s before ``step_at`` and ``high`` after, lengths from ``base``."""
    before = [t for t in poisson_arrivals(len(base), low, seed) if t < step_at]
    after = [step_at + t for t in poisson_arrivals(len(base), high, seed + 1) if step_at + t < duration]
    if after and after[-1] < duration - 2.0 / high:
        raise UsageError("the step workload ran out of requests before the end; lower the loads or lags")
    times = before + after
    if len(times) > len(base):
        raise UsageError("the step workload needs more requests than generated; lower the loads or duration")
    return with_arrivals(base[: len(times)], times)


def scale_up_miss(trace: list[TraceRequest], n_low: int, n_high: int, step_at: float, lag: float,
                  slo_ttft: float, config: SchedulerConfig, cost) -> FleetResult:
    """Round robin over the replicas that are up when each request arrives."""
    ready_at = step_at + lag
    assignment = [i % (n_high if r.arrival_time >= ready_at else n_low) for i, r in enumerate(trace)]
    ttfts = fleet_ttfts(trace, assignment, n_high, config, cost)
    return FleetResult(n_high, percentile(ttfts, 99), percentile(ttfts, 50),
                       sum(t > slo_ttft for t in ttfts) / len(ttfts))


def peak_provisioned_idle_share(replicas_per_load: list[int]) -> float:
    """Share of replica-hours a fixed fleet sized for the peak leaves idle, when each load lasts equally long.

    This is what a cost dashboard finds (book 8.5, C.5.5): right-sizing to each period's need saves it.
    """
    peak = max(replicas_per_load)
    return 1.0 - sum(replicas_per_load) / (len(replicas_per_load) * peak)


def _floats(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"expected comma-separated numbers, got {text!r}") from None
    if not vals or any(v < 0 or math.isnan(v) for v in vals):
        raise UsageError(f"expected non-negative numbers, got {text!r}")
    return vals


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch08_production.autoscale", __doc__)
    add_common_args(parser, model=False)
    parser.add_argument("--slo-ttft", type=float, default=2.0, help="TTFT p99 target, seconds")
    parser.add_argument("--loads", default="0.5,1,2,4", help="offered loads to size, requests/s")
    parser.add_argument("--requests", type=int, default=240, help="requests per simulated load (at least)")
    parser.add_argument("--lags", default="0,10,30,60", help="scale-up lags to compare, seconds")
    parser.add_argument("--after-s", type=float, default=20.0,
                        help="seconds of high load simulated after the slowest lag has elapsed")
    parser.add_argument("--mean-output", type=int, default=64, help="mean output tokens per request")
    args = parser.parse_args(argv)
    if args.smoke:
        args.loads, args.requests, args.lags, args.after_s = "2,8", 60, "0,5,15", 10.0
    with friendly_errors():
        loads, lags = _floats(args.loads), _floats(args.lags)
        if any(v <= 0 for v in loads) or args.slo_ttft <= 0:
            raise UsageError("loads and --slo-ttft must be positive")
        cost = load_cost_model()
        source = cost.meta.get("source", "calibrated") if hasattr(cost, "meta") else "?"
        config = SchedulerConfig()
        sizing = []
        for load in loads:
            n = max(args.requests, int(load * args.after_s * 1.5))  # long enough for queues to settle
            base = synthetic_trace(n, args.seed, mean_prompt=128, mean_output=args.mean_output)
            trace = with_arrivals(base, poisson_arrivals(len(base), load, args.seed))
            r = replicas_needed(trace, args.slo_ttft, config, cost)
            sizing.append({"load_rps": load, "replicas": r.replicas, "ttft_p50_s": r.ttft_p50_s,
                           "ttft_p99_s": r.ttft_p99_s})
        low, high = min(loads), max(loads)
        n_low = next(s["replicas"] for s in sizing if s["load_rps"] == low)
        n_high = next(s["replicas"] for s in sizing if s["load_rps"] == high)
        step_at = 10.0
        duration = step_at + max(lags) + args.after_s  # every lag ends inside the high phase
        need = int(low * step_at + high * (duration - step_at) * 1.3) + 20
        big = synthetic_trace(need, args.seed + 7, mean_prompt=128, mean_output=args.mean_output)
        trace = step_trace(low, high, step_at, duration, big, args.seed)
        # Size the target fleet on this very high phase (near saturation, another sample can need one more).
        high_phase = [dataclasses.replace(r, arrival_time=r.arrival_time - step_at) for r in trace
                      if r.arrival_time >= step_at]
        n_high = max(n_high, replicas_needed(high_phase, args.slo_ttft, config, cost).replicas)
        lag_rows = []
        for lag in lags:
            r = scale_up_miss(trace, n_low, n_high, step_at, lag, args.slo_ttft, config, cost)
            lag_rows.append({"lag_s": lag, "replicas": f"{n_low}->{n_high}", "ttft_p99_s": r.ttft_p99_s,
                             "slo_miss_pct": 100 * r.slo_miss})
    if not args.json:
        print_table(sizing, title=f"replicas for TTFT p99 <= {args.slo_ttft} s (ch05 simulator, cost model: "
                                  f"{source})")
        print_table(lag_rows, title=f"load step {low} -> {high} req/s at t={step_at:.0f} s, {len(trace)} requests over "
                                    f"{duration:.0f} s: share over the SLO by scale-up lag")
    idle = peak_provisioned_idle_share([s["replicas"] for s in sizing])
    if not args.json:
        print(f"a fleet sized for the peak ({max(s['replicas'] for s in sizing)} replicas) that sees each load above "
              f"for an equal share of the day is idle {100 * idle:.0f}% of its replica-hours")
    emit_json({"benchmark": "autoscale", "slo_ttft_s": args.slo_ttft, "cost_model": source, "sizing": sizing,
               "peak_provisioned_idle_share": idle, "scale_up": lag_rows,
               "hardware": stamp_dict(dtype="simulated")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
