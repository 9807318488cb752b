"""What continuous batching buys: the request rate a latency target can sustain (5.3.4, 5.1.2).

Book sections: 5.3.4 性能提升分析, 5.1.2 服务质量vs吞吐量.

Orca and vLLM report continuous batching's gain as the **request rate a server sustains at the same
latency**, not as the throughput of one offline batch (where every request is there at t=0 and static
batching loses only its idle slots: ch05's bench measures that, about 1.1x on a CPU). Here the real
engine serves Poisson arrivals at rising rates, once with static batching and once with continuous
batching, and a rate counts as sustained when p90 TTFT and p90 TPOT both meet the target. Each rate is
a real replay (``replay(skip_idle=True)``: real step times, no sleeping while the engine is idle).

The search doubles the rate from ``--min-rate`` until a policy misses the target, then tries the
geometric midpoint of the last pass and the first miss once, so each answer is within a factor of
sqrt(2) below the true one. Continuous batching's search starts at static's answer (the slow low-rate
replays are not repeated). The ratio of the two sustained rates is ``continuous_vs_static_rate_at_slo``.

    python -m ch05_scheduling.rate_at_slo --smoke
    python -m ch05_scheduling.rate_at_slo --ttft-p90 2 --tpot-p90 0.25 --n 32
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class SLOTarget:
    ttft_p90_s: float
    tpot_p90_s: float

    def met(self, m: dict[str, float]) -> bool:
        return m["ttft_p90"] <= self.ttft_p90_s and m["tpot_p90"] <= self.tpot_p90_s


@dataclass(frozen=True)
class RatePoint:
    policy: str
    rate_rps: float
    ttft_p90_s: float
    tpot_p90_s: float
    throughput_tok_s: float
    met: bool


def sustained_rate(probe, target: SLOTarget, min_rate: float, max_rate: float,
                   policy: str = "") -> tuple[float, list[RatePoint]]:
    """Highest rate ``probe(rate) -> metrics`` sustains: doubling, then one geometric midpoint.

    Returns 0.0 when even ``min_rate`` misses (lower ``--min-rate``), ``max_rate`` when every rate passes.
    """
    points: list[RatePoint] = []

    def ok(rate: float) -> bool:
        m = probe(rate)
        good = target.met(m)
        points.append(RatePoint(policy, rate, m["ttft_p90"], m["tpot_p90"], m["throughput_tok_s"], good))
        return good

    if not ok(min_rate):
        return 0.0, points
    passed = min_rate
    while passed * 2 <= max_rate:
        if not ok(passed * 2):
            mid = passed * math.sqrt(2)
            return (mid if ok(mid) else passed), points
        passed *= 2
    return passed, points


@dataclass(frozen=True)
class RateComparison:
    static_rps: float
    continuous_rps: float
    points: list[RatePoint]

    @property
    def ratio(self) -> float | None:
        return self.continuous_rps / self.static_rps if self.static_rps else None

    @property
    def ttft_p90_reduction_pct(self) -> float | None:
        """The latency claim, at one rate both were measured at: static's highest sustained rate."""
        at = {p.policy: p for p in self.points if p.rate_rps == self.static_rps}
        if len(at) < 2 or not at["static"].ttft_p90_s > 0:
            return None
        return 100 * (1 - at["continuous"].ttft_p90_s / at["static"].ttft_p90_s)


def compare_policies(engine, base, target: SLOTarget, min_rate: float, max_rate: float,
                     seed: int = 0) -> RateComparison:
    """Static, then continuous batching on the real ``engine`` over Poisson arrivals of ``base``.

    Continuous batching starts its search at static's sustained rate (the slow low-rate replays are not
    repeated); if it misses there, it is searched from ``min_rate`` like static.
    """
    from ch05_scheduling.bench import engine_run
    from ch05_scheduling.workload import poisson_arrivals, with_arrivals

    def prober(policy: str):
        def probe(rate: float) -> dict[str, float]:
            trace = with_arrivals(base, poisson_arrivals(len(base), rate, seed))
            return engine_run(engine, trace, policy, skip_idle=True)[0]
        return probe

    static_rps, points = sustained_rate(prober("static"), target, min_rate, max_rate, "static")
    start = static_rps or min_rate
    cont_rps, more = sustained_rate(prober("continuous"), target, start, max_rate, "continuous")
    if cont_rps == 0.0 and start > min_rate:
        cont_rps, again = sustained_rate(prober("continuous"), target, min_rate, max_rate, "continuous")
        more += again
    return RateComparison(static_rps, cont_rps, points + more)


def main(argv: list[str] | None = None) -> int:
    from ch05_scheduling.engine import EngineConfig, LLMEngine
    from ch05_scheduling.workload import sharegpt_trace
    from common.bench import stamp_dict
    from common.cli import UsageError, add_common_args, friendly_errors, make_parser, positive_int
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch05_scheduling.rate_at_slo", __doc__)
    add_common_args(parser)
    parser.add_argument("--n", type=positive_int, default=24, help="requests per rate (ShareGPT sample)")
    parser.add_argument("--max-output", type=positive_int, default=64, help="output length cap")
    parser.add_argument("--max-prompt", type=positive_int, default=512, help="prompt length cap")
    parser.add_argument("--max-num-seqs", type=positive_int, default=8, help="batch size of both policies")
    parser.add_argument("--ttft-p90", type=float, default=2.0, help="target p90 time to first token, s")
    parser.add_argument("--tpot-p90", type=float, default=0.25, help="target p90 time per output token, s")
    parser.add_argument("--min-rate", type=float, default=1 / 64, help="first rate tried, requests/s")
    parser.add_argument("--max-rate", type=float, default=16.0, help="highest rate tried, requests/s")
    args = parser.parse_args(argv)
    with friendly_errors():
        if min(args.ttft_p90, args.tpot_p90, args.min_rate) <= 0 or args.max_rate < args.min_rate:
            raise UsageError("targets and rates must be positive, and --max-rate >= --min-rate")
        n, max_out, max_prompt, lo, hi = ((4, 6, 64, 0.5, 1.0) if args.smoke else
                                          (args.n, args.max_output, args.max_prompt, args.min_rate, args.max_rate))
        # --smoke checks the machinery in seconds: a loose target, so the search takes more than one step
        target = SLOTarget(10.0, 2.0) if args.smoke else SLOTarget(args.ttft_p90, args.tpot_p90)
        engine = LLMEngine(EngineConfig(model=args.model, device=args.device, dtype=args.dtype,
                                        load_format=args.load_format, seed=args.seed,
                                        max_num_seqs=args.max_num_seqs))
        base = sharegpt_trace(engine.tokenizer, n, args.seed, max_output=max_out, max_prompt=max_prompt)
        engine.generate([list(base[0].prompt_token_ids)], None)  # warm-up
        res = compare_policies(engine, base, target, lo, hi, args.seed)
    ratio, cut = res.ratio, res.ttft_p90_reduction_pct
    if not args.json:
        print_table([{"policy": p.policy, "rate req/s": p.rate_rps, "TTFT p90 s": p.ttft_p90_s,
                      "TPOT p90 s": p.tpot_p90_s, "tok/s": p.throughput_tok_s, "meets target": "yes" if p.met else "no"}
                     for p in res.points],
                    title=f"{n} ShareGPT requests per rate, batch {args.max_num_seqs}, target p90 TTFT <= "
                          f"{target.ttft_p90_s} s and p90 TPOT <= {target.tpot_p90_s} s (real engine)")
        print(f"sustained: static {res.static_rps:.3g} req/s, continuous {res.continuous_rps:.3g} req/s -> "
              + (f"{ratio:.2f}x" if ratio else "static met no rate tried (lower --min-rate)"))
        if cut is not None:
            print(f"at {res.static_rps:.3g} req/s continuous batching cuts p90 TTFT by {cut:.0f}%")
    emit_json({"bench": "ch05_scheduling.rate_at_slo", "requests_per_rate": n, "max_output": max_out,
               "max_num_seqs": args.max_num_seqs, "target_ttft_p90_s": target.ttft_p90_s,
               "target_tpot_p90_s": target.tpot_p90_s, "static_rate_at_slo": res.static_rps,
               "continuous_rate_at_slo": res.continuous_rps, "continuous_vs_static_rate_at_slo": ratio,
               "ttft_p90_reduction_pct": cut, "points": [vars(p) for p in res.points],
               "hardware": stamp_dict(dtype=args.dtype)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
