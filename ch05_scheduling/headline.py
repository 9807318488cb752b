"""Chapter 5's line in the guided tour (``make demo``): what continuous batching buys over static.

Measured in the call on the embedded model, batch size 4, a few requests of very different output
lengths:

1. the figure Orca and vLLM quote: the highest Poisson request rate each policy sustains with p90 TTFT
   <= 2 s and p90 TPOT <= 0.25 s (``rate_at_slo.compare_policies``; the chapter's full sweep is
   ``python -m ch05_scheduling.rate_at_slo``);
2. offline, every request present at t=0: tokens/s of each, and whether the greedy outputs are identical.
   This mix was picked so one long job sits in every static batch; on ShareGPT (ch05's bench) the
   offline gain is much smaller, which is why (1) is the headline.

    python -m ch05_scheduling.headline [--smoke]
"""

from __future__ import annotations

from common.report import Headline

# output lengths: one long job in every batch of 4 holds the static batch hostage
FULL = (48, 4, 6, 5, 40, 5, 8, 4, 36, 4, 6, 4)
SMOKE = (16, 2, 2, 2, 16, 2, 2, 2)


def headline(smoke: bool = False) -> Headline:
    from ch05_scheduling.engine import EngineConfig, LLMEngine
    from ch05_scheduling.metrics import summarize_requests
    from ch05_scheduling.policies import make_policy
    from ch05_scheduling.rate_at_slo import SLOTarget, compare_policies
    from ch05_scheduling.replay import replay
    from ch05_scheduling.workload import TraceRequest

    lens = SMOKE if smoke else FULL
    engine = LLMEngine(EngineConfig(max_num_seqs=4))
    trace = [TraceRequest(i, 0.0, tuple(range(200 + 11 * i, 232 + 11 * i)), n) for i, n in enumerate(lens)]
    engine.generate([list(trace[0].prompt_token_ids)], None)  # warm-up
    runs = {}
    for name in ("static", "continuous"):
        engine.scheduler.policy = make_policy(name)
        seqs = replay(engine, trace)
        runs[name] = (summarize_requests(seqs), [s.output_token_ids for s in seqs])
    (s, s_out), (c, c_out) = runs["static"], runs["continuous"]
    speedup = c["throughput_tok_s"] / s["throughput_tok_s"]
    # the smoke run checks the machinery only: a loose target and two rates
    target, lo, hi = (SLOTarget(10.0, 2.0), 0.5, 1.0) if smoke else (SLOTarget(2.0, 0.25), 0.125, 8.0)
    rates = compare_policies(engine, trace, target, lo, hi)
    figures = {"requests": len(lens), "output_tokens": sum(lens), "batch": engine.config.max_num_seqs,
               "static_rate_at_slo": rates.static_rps, "continuous_rate_at_slo": rates.continuous_rps,
               "continuous_vs_static_rate_at_slo": rates.ratio, "target_ttft_p90_s": target.ttft_p90_s,
               "target_tpot_p90_s": target.tpot_p90_s,
               "static_tok_s": s["throughput_tok_s"], "continuous_tok_s": c["throughput_tok_s"],
               "continuous_vs_static": speedup, "static_ttft_mean_s": s["ttft_mean"],
               "continuous_ttft_mean_s": c["ttft_mean"], "outputs_identical": s_out == c_out}
    same = "identical" if s_out == c_out else "DIFFERENT"
    gain = (f"{rates.ratio:.1f}x the request rate" if rates.ratio else "a rate where static batching met none")
    text = (f"At p90 TTFT <= {target.ttft_p90_s:g} s and TPOT <= {target.tpot_p90_s:g} s, continuous batching "
            f"sustained {gain} of static batching on this machine ({rates.continuous_rps:.2g} vs "
            f"{rates.static_rps:.2g} req/s, batch {engine.config.max_num_seqs}); offline, all {len(lens)} requests "
            f"at t=0, {speedup:.2f}x the tokens/s ({c['throughput_tok_s']:.1f} vs {s['throughput_tok_s']:.1f}, "
            f"{same} greedy outputs)")
    return Headline("ch05", text, figures)


def main(argv: list[str] | None = None) -> int:
    from common.cli import headline_main

    return headline_main("python -m ch05_scheduling.headline", __doc__, headline, "8 short requests instead of 12 longer ones", argv)


if __name__ == "__main__":
    raise SystemExit(main())
