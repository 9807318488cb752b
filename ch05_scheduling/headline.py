"""Chapter 5's line in the guided tour (``make demo``): what continuous batching buys over static.

Measured in the call on the embedded model: the same few requests (very different output lengths, all
present at t=0, batch size 4) through our engine with static batching, then with continuous batching;
tokens/s and mean time-to-first-token of each, and whether the outputs are identical (greedy).

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
    figures = {"requests": len(lens), "output_tokens": sum(lens), "batch": engine.config.max_num_seqs,
               "static_tok_s": s["throughput_tok_s"], "continuous_tok_s": c["throughput_tok_s"],
               "continuous_vs_static": speedup, "static_ttft_mean_s": s["ttft_mean"],
               "continuous_ttft_mean_s": c["ttft_mean"], "outputs_identical": s_out == c_out}
    same = "identical" if s_out == c_out else "DIFFERENT"
    text = (f"Continuous batching served {len(lens)} requests of mixed lengths {speedup:.2f}x faster than static "
            f"batching on this machine ({c['throughput_tok_s']:.1f} vs {s['throughput_tok_s']:.1f} tok/s, mean TTFT "
            f"{c['ttft_mean']:.2f} s vs {s['ttft_mean']:.2f} s, batch {engine.config.max_num_seqs}, {same} "
            f"greedy outputs)")
    return Headline("ch05", text, figures)


def main(argv: list[str] | None = None) -> int:
    from common.cli import headline_main

    return headline_main("python -m ch05_scheduling.headline", __doc__, headline, "8 short requests instead of 12 longer ones", argv)


if __name__ == "__main__":
    raise SystemExit(main())
