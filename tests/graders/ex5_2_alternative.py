"""Exercise 5.2, a different correct answer: every runnable grid point is simulated into a list first and
``max`` (which keeps the first of equal keys) picks the winner; the batch scenario's metrics carry no SLO."""

from __future__ import annotations

from ch05_scheduling.metrics import SLO
from ch05_scheduling.scheduler import SchedulerConfig
from ch05_scheduling.simulator import simulate
from ch05_scheduling.workload import poisson_arrivals, synthetic_trace, with_arrivals


def best_config(trace, objective, cost, *, seqs_grid=(1, 4, 16, 64), tokens_grid=(128, 512, 2048),
                chunked_grid=(True, False), num_blocks=728, slo=None):
    need = max(r.prompt_len + r.output_len for r in trace)
    configs = [SchedulerConfig(num_blocks=num_blocks, max_num_seqs=s, max_num_batched_tokens=t,
                               enable_chunked_prefill=c)
               for s in seqs_grid for t in tokens_grid for c in chunked_grid if c or t >= need]
    runs = [(cfg, simulate(trace, cfg, "continuous", cost).metrics(slo)) for cfg in configs]
    return max(runs, key=lambda run: objective(run[1]))


def tune_two_scenarios(cost, n=48, seed=0, rate=2.0, slo=SLO(ttft_s=1.0, tpot_s=0.15)):
    offline = synthetic_trace(n, seed, mean_prompt=200, mean_output=100)
    online = with_arrivals(offline, poisson_arrivals(n, rate, seed))
    return {"batch": best_config(offline, lambda m: m["throughput_tok_s"], cost),
            "chat": best_config(online, lambda m: m["goodput_rps"], cost, slo=slo)}
