"""Sustainable request rate at a latency target: the search, the idle-skipping replay, one real sweep."""

from __future__ import annotations

import time

import pytest

from ch05_scheduling.rate_at_slo import SLOTarget, sustained_rate
from common.report import parse_json_line


def _latency_grows_with_rate(knee: float):
    """A fake server: p90 TTFT crosses 1 s at ``knee`` req/s; records the rates it was asked for."""
    asked: list[float] = []

    def probe(rate: float) -> dict[str, float]:
        asked.append(rate)
        return {"ttft_p90": rate / knee, "tpot_p90": 0.05, "throughput_tok_s": 10 * rate}

    return probe, asked


@pytest.mark.parametrize("knee", [0.1, 0.5, 0.7, 3.0, 100.0])
def test_the_search_lands_within_sqrt2_below_the_knee(knee):
    probe, asked = _latency_grows_with_rate(knee)
    rate, points = sustained_rate(probe, SLOTarget(1.0, 0.2), 0.0625, 16.0, "p")
    assert len(points) == len(asked) and all(p.policy == "p" for p in points)
    if knee >= 16.0:
        assert rate == 16.0
    else:
        assert knee / 2 ** 0.5 <= rate <= knee
        assert all(p.met == (p.rate_rps <= knee) for p in points)


def test_a_target_no_rate_meets_gives_zero_and_tpot_counts_too():
    probe, _ = _latency_grows_with_rate(0.01)
    assert sustained_rate(probe, SLOTarget(1.0, 0.2), 0.0625, 16.0)[0] == 0.0
    slow_tokens = lambda rate: {"ttft_p90": 0.0, "tpot_p90": 0.5, "throughput_tok_s": 1.0}  # noqa: E731
    assert sustained_rate(slow_tokens, SLOTarget(1.0, 0.2), 0.0625, 16.0)[0] == 0.0


@pytest.fixture(scope="module")
def small_engine():
    from ch05_scheduling.engine import EngineConfig, LLMEngine

    return LLMEngine(EngineConfig(max_num_seqs=4))


def test_skip_idle_replay_jumps_the_clock_instead_of_sleeping(small_engine, monkeypatch):
    from ch05_scheduling.replay import replay
    from ch05_scheduling.workload import TraceRequest

    trace = [TraceRequest(0, 0.0, tuple(range(300, 320)), 3), TraceRequest(1, 600.0, tuple(range(400, 420)), 3)]
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail(f"slept {s:.1f} s"))
    first, second = replay(small_engine, trace, skip_idle=True)
    assert second.first_scheduled_time >= 600.0 > first.finish_time  # the clock moved on to the arrival
    assert second.first_token_time - second.arrival_time < 600.0       # and the wait was not charged to it
    assert len(second.output_token_ids) == 3


@pytest.mark.slow
def test_smoke_sweep_on_the_real_engine_reports_both_rates(capsys):
    from ch05_scheduling import rate_at_slo

    assert rate_at_slo.main(["--smoke", "--json"]) == 0
    out = parse_json_line(capsys.readouterr().out)
    assert {p["policy"] for p in out["points"]} == {"static", "continuous"}
    for policy in ("static", "continuous"):  # the sustained rate is the highest rate that met the target
        met = [p["rate_rps"] for p in out["points"] if p["policy"] == policy and p["met"]]
        assert out[f"{policy}_rate_at_slo"] == (max(met) if met else 0.0)
    if out["static_rate_at_slo"]:
        assert out["continuous_vs_static_rate_at_slo"] == pytest.approx(
            out["continuous_rate_at_slo"] / out["static_rate_at_slo"])
    for p in out["points"]:  # every point's verdict follows from its own measured p90s
        assert p["met"] == (p["ttft_p90_s"] <= out["target_ttft_p90_s"] and p["tpot_p90_s"] <= out["target_tpot_p90_s"])
