"""Exercise 5.2: the tuner returns the best grid point for each scenario (checked by re-simulation)."""

from __future__ import annotations

from ch05_scheduling.metrics import SLO
from ch05_scheduling.scheduler import SchedulerConfig
from ch05_scheduling.simulator import DEFAULT_COST, simulate
from ch05_scheduling.workload import poisson_arrivals, synthetic_trace, with_arrivals

SEQS, TOKENS = (1, 4, 16), (128, 1024)


def test_best_config_is_the_best_of_the_grid(exercise):
    mod = exercise("ch05_scheduling", "ex5_2_tune_scenarios")
    trace = synthetic_trace(16, seed=3, mean_prompt=100, mean_output=40)
    cfg, m = mod.best_config(trace, lambda m: m["throughput_tok_s"], DEFAULT_COST, seqs_grid=SEQS,
                             tokens_grid=TOKENS, chunked_grid=(True,))
    for s in SEQS:
        for t in TOKENS:
            other = simulate(trace, SchedulerConfig(num_blocks=728, max_num_seqs=s, max_num_batched_tokens=t),
                             "continuous", DEFAULT_COST).metrics()
            assert m["throughput_tok_s"] >= other["throughput_tok_s"] - 1e-9
    assert cfg.max_num_seqs > 1  # batching pays for throughput


def test_two_scenarios_pick_for_their_own_objective(exercise):
    mod = exercise("ch05_scheduling", "ex5_2_tune_scenarios")
    slo = SLO(ttft_s=1.0, tpot_s=0.15)
    picks = mod.tune_two_scenarios(DEFAULT_COST, n=16, slo=slo)
    chat_cfg, chat_m = picks["chat"]
    batch_cfg, batch_m = picks["batch"]
    base = synthetic_trace(16, 0, mean_prompt=200, mean_output=100)
    chat_trace = with_arrivals(base, poisson_arrivals(16, 2.0, 0))
    # each scenario's pick is at least as good, on its objective, as the other scenario's pick
    swapped = simulate(chat_trace, batch_cfg, "continuous", DEFAULT_COST).metrics(slo)
    assert chat_m["goodput_rps"] >= swapped["goodput_rps"] - 1e-9
    swapped = simulate(base, chat_cfg, "continuous", DEFAULT_COST).metrics(slo)
    assert batch_m["throughput_tok_s"] >= swapped["throughput_tok_s"] - 1e-9
