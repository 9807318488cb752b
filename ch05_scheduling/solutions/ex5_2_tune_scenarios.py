"""Exercise 5.2 (book 5.6.1, 5.6.2): tune the scheduler for two scenarios with the simulator.

Task: write ``best_config(trace, objective, cost, seqs_grid, tokens_grid, chunked_grid, num_blocks)``:
simulate ``trace`` (``ch05_scheduling.simulator.simulate``, policy ``continuous``) under every
combination of ``max_num_seqs`` x ``max_num_batched_tokens`` x ``enable_chunked_prefill`` and return the
:class:`SchedulerConfig` with the highest ``objective(metrics)`` together with its metrics (ties: the
first one in grid order). Then ``tune_two_scenarios(cost)`` applies it to

* **chat** (latency): Poisson arrivals, objective = goodput under a TTFT/TPOT SLO (DistServe);
* **batch** (offline throughput): every request at t=0, objective = output tokens/s;

and returns ``{"chat": (config, metrics), "batch": (config, metrics)}``. Compare the two choices with
the advice in ``python -m ch05_scheduling.tune``. Grade: ``python -m common.grade 5.2``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from ch05_scheduling.cost_model import CostModel
from ch05_scheduling.metrics import SLO
from ch05_scheduling.scheduler import SchedulerConfig
from ch05_scheduling.simulator import simulate
from ch05_scheduling.workload import TraceRequest, poisson_arrivals, synthetic_trace, with_arrivals

Objective = Callable[[dict], float]


def best_config(trace: list[TraceRequest], objective: Objective, cost: CostModel, *,
                seqs_grid: Sequence[int] = (1, 4, 16, 64), tokens_grid: Sequence[int] = (128, 512, 2048),
                chunked_grid: Sequence[bool] = (True, False), num_blocks: int = 728,
                slo: SLO | None = None) -> tuple[SchedulerConfig, dict]:
    best: tuple[SchedulerConfig, dict] | None = None
    longest = max(r.prompt_len + r.output_len for r in trace)
    for seqs, tokens, chunked in itertools.product(seqs_grid, tokens_grid, chunked_grid):
        if not chunked and tokens < longest:
            continue  # without chunking every prompt (and a recompute) must fit one step's budget
        cfg = SchedulerConfig(num_blocks=num_blocks, max_num_seqs=seqs, max_num_batched_tokens=tokens,
                              enable_chunked_prefill=chunked)
        m = simulate(trace, cfg, "continuous", cost).metrics(slo)
        if best is None or objective(m) > objective(best[1]):
            best = (cfg, m)
    if best is None:
        raise ValueError("no configuration in the grid can run this trace")
    return best


def tune_two_scenarios(cost: CostModel, n: int = 48, seed: int = 0, rate: float = 2.0,
                       slo: SLO = SLO(ttft_s=1.0, tpot_s=0.15)) -> dict[str, tuple[SchedulerConfig, dict]]:
    base = synthetic_trace(n, seed, mean_prompt=200, mean_output=100)
    chat = with_arrivals(base, poisson_arrivals(n, rate, seed))
    return {
        "chat": best_config(chat, lambda m: m["goodput_rps"], cost, slo=slo),
        "batch": best_config(base, lambda m: m["throughput_tok_s"], cost, slo=slo),
    }
