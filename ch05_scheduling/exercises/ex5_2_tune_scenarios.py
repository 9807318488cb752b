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

from collections.abc import Callable, Sequence

from ch05_scheduling.cost_model import CostModel
from ch05_scheduling.metrics import SLO
from ch05_scheduling.scheduler import SchedulerConfig
from ch05_scheduling.workload import TraceRequest

Objective = Callable[[dict], float]


def best_config(trace: list[TraceRequest], objective: Objective, cost: CostModel, *,
                seqs_grid: Sequence[int] = (1, 4, 16, 64), tokens_grid: Sequence[int] = (128, 512, 2048),
                chunked_grid: Sequence[bool] = (True, False), num_blocks: int = 728,
                slo: SLO | None = None) -> tuple[SchedulerConfig, dict]:
    """Hint: skip combinations without chunked prefill whose budget is below the longest request."""
    raise NotImplementedError("exercise 5.2: simulate every grid point and keep the best objective")


def tune_two_scenarios(cost: CostModel, n: int = 48, seed: int = 0, rate: float = 2.0,
                       slo: SLO = SLO(ttft_s=1.0, tpot_s=0.15)) -> dict[str, tuple[SchedulerConfig, dict]]:
    """chat: synthetic_trace(n, seed, mean_prompt=200, mean_output=100) with Poisson(rate) arrivals,
    objective goodput_rps; batch: the same trace at t=0, objective throughput_tok_s."""
    raise NotImplementedError("exercise 5.2: call best_config for the chat and the batch scenario")
