"""The simulator: same scheduler as the engine, cost-model clock, metrics and goodput that make sense."""

from __future__ import annotations

import pytest

from ch05_scheduling.cost_model import CostModel, StepFeatures, StepRecord, fit
from ch05_scheduling.metrics import SLO
from ch05_scheduling.scheduler import SchedulerConfig
from ch05_scheduling.simulator import DEFAULT_COST, max_goodput_rate, simulate
from ch05_scheduling.timeline import draw, run_both
from ch05_scheduling.workload import bursty_arrivals, poisson_arrivals, synthetic_trace, with_arrivals

CFG = SchedulerConfig(num_blocks=400, block_size=16, max_num_seqs=8, max_num_batched_tokens=256)


def test_continuous_batching_beats_static_in_simulation():
    trace = synthetic_trace(32, seed=1)
    static = simulate(trace, CFG, "static", DEFAULT_COST).metrics()
    cont = simulate(trace, CFG, "continuous", DEFAULT_COST).metrics()
    assert cont["throughput_tok_s"] > static["throughput_tok_s"]
    assert cont["ttft_mean"] < static["ttft_mean"]
    assert cont["output_tokens"] == static["output_tokens"] == sum(r.output_len for r in trace)


def test_kv_capacity_limit_causes_preemptions_but_everything_finishes():
    trace = synthetic_trace(16, seed=2)
    small = SchedulerConfig(num_blocks=90, block_size=16, max_num_seqs=16, max_num_batched_tokens=512)
    res = simulate(trace, small, "continuous", DEFAULT_COST)
    assert res.num_preemptions > 0 and res.metrics()["preemptions"] == res.num_preemptions
    assert all(s.num_output_tokens == r.output_len for s, r in zip(res.seqs, trace, strict=True))


def test_metrics_are_ordered_and_goodput_respects_the_slo():
    trace = with_arrivals(synthetic_trace(40, seed=3), poisson_arrivals(40, 2.0, seed=3))
    m = simulate(trace, CFG, "continuous", DEFAULT_COST).metrics(SLO(ttft_s=1.0, tpot_s=0.2))
    for k in ("ttft", "tpot", "e2e", "queue"):
        assert m[f"{k}_p50"] <= m[f"{k}_p90"] <= m[f"{k}_p99"]
    assert 0 <= m["slo_attainment"] <= 1
    assert m["goodput_rps"] <= m["request_rate_rps"] + 1e-9
    strict = simulate(trace, CFG, "continuous", DEFAULT_COST).metrics(SLO(ttft_s=1e-6, tpot_s=1e-6))
    assert strict["slo_attainment"] == 0 and strict["goodput_rps"] == 0


def test_bursty_arrivals_keep_the_mean_rate_but_clump():
    p = poisson_arrivals(2000, 4.0, seed=0)
    b = bursty_arrivals(2000, 4.0, cv=3.0, seed=0)
    assert abs(p[-1] - b[-1]) / p[-1] < 0.35
    gaps_p = sorted(y - x for x, y in zip(p, p[1:], strict=False))
    gaps_b = sorted(y - x for x, y in zip(b, b[1:], strict=False))
    assert gaps_b[len(gaps_b) // 2] < gaps_p[len(gaps_p) // 2]  # most bursty gaps are tiny


def test_distserve_goodput_rate_falls_with_a_stricter_slo():
    trace = synthetic_trace(24, seed=4)
    loose = max_goodput_rate(trace, CFG, "continuous", DEFAULT_COST, SLO(5.0, 0.5), iters=6)
    tight = max_goodput_rate(trace, CFG, "continuous", DEFAULT_COST, SLO(0.5, 0.1), iters=6)
    assert loose >= tight > 0


def test_dynamic_batching_wakes_up_on_its_timeout():
    trace = synthetic_trace(2, seed=5)
    from ch05_scheduling.policies import make_policy

    res = simulate(trace, CFG, make_policy("dynamic", timeout_s=0.25), DEFAULT_COST)
    assert all(s.first_scheduled_time == pytest.approx(0.25) for s in res.seqs)


def test_cost_model_fit_recovers_known_coefficients_and_round_trips(tmp_path):
    truth = CostModel([0.02, 0.0005, 0.001, 0.0, 0.0002])
    recs = []
    for n, lg, a, s in [(1, 1, 0.1, 1), (8, 8, 2, 8), (200, 1, 20, 3), (64, 4, 8, 6), (300, 3, 50, 5),
                        (16, 16, 9, 16), (120, 2, 14, 7), (40, 0, 3, 2)]:
        f = StepFeatures(n, lg, a, s)
        recs.append(StepRecord(f, truth.predict(f)))
    model = fit(recs)
    assert model.coef == pytest.approx(truth.coef, abs=1e-6)
    assert all(c >= 0 for c in model.coef)
    back = CostModel.load(model.save(tmp_path / "cm.json"))
    assert back.coef == model.coef


def test_timeline_figure_is_written(tmp_path):
    results = run_both(DEFAULT_COST)
    path = draw(results, tmp_path / "timeline.png")
    assert path.stat().st_size > 10_000
    s, c = results["static"].metrics(), results["continuous"].metrics()
    assert c["ttft_mean"] < s["ttft_mean"]


def test_bucket_predictor_learns_length_buckets_and_sjf_uses_it():
    from ch05_scheduling.length_predictor import BucketPredictor, mean_abs_error, oracle
    from ch05_scheduling.workload import TraceRequest

    # output length grows with prompt length: a bucket predictor must beat a constant guess
    train = [TraceRequest(i, 0.0, tuple(range(p)), p // 2) for i, p in enumerate(range(8, 400, 3))]
    test = [TraceRequest(i, 0.0, tuple(range(p)), p // 2) for i, p in enumerate(range(10, 400, 17))]
    pred = BucketPredictor.fit(train, buckets=8).predict_trace(test)
    const = {r.request_id: 100 for r in test}
    assert mean_abs_error(pred, test) < mean_abs_error(const, test) / 2
    assert mean_abs_error(oracle(test), test) == 0
