"""Exercise 5.2, plausible but wrong: finds the best configuration but returns the metrics of the last
grid point it simulated (the best's were never kept), so the numbers it reports are not its choice's."""

from __future__ import annotations

import itertools

from ch05_scheduling.scheduler import SchedulerConfig
from ch05_scheduling.simulator import simulate
from ch05_scheduling.solutions.ex5_2_tune_scenarios import SLO
from ch05_scheduling.workload import poisson_arrivals, synthetic_trace, with_arrivals


def best_config(trace, objective, cost, *, seqs_grid=(1, 4, 16, 64), tokens_grid=(128, 512, 2048),
                chunked_grid=(True, False), num_blocks=728, slo=None):
    best_cfg, best_score, m = None, float("-inf"), {}
    longest = max(r.prompt_len + r.output_len for r in trace)
    for seqs, tokens, chunked in itertools.product(seqs_grid, tokens_grid, chunked_grid):
        if not chunked and tokens < longest:
            continue
        cfg = SchedulerConfig(num_blocks=num_blocks, max_num_seqs=seqs, max_num_batched_tokens=tokens,
                              enable_chunked_prefill=chunked)
        m = simulate(trace, cfg, "continuous", cost).metrics(slo)
        if objective(m) > best_score:
            best_cfg, best_score = cfg, objective(m)
    return best_cfg, m


def tune_two_scenarios(cost, n=48, seed=0, rate=2.0, slo=SLO(ttft_s=1.0, tpot_s=0.15)):
    base = synthetic_trace(n, seed, mean_prompt=200, mean_output=100)
    chat = with_arrivals(base, poisson_arrivals(n, rate, seed))
    return {"chat": best_config(chat, lambda m: m["goodput_rps"], cost, slo=slo),
            "batch": best_config(base, lambda m: m["throughput_tok_s"], cost, slo=slo)}
