"""Cost and scaling (book 8.6, 8.7): ROI arithmetic, spot savings and the termination-notice watcher, and
the autoscaling simulation on ch05's simulator."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from ch08_production import autoscale, roi, spot
from common.cli import UsageError
from common.report import parse_json_line


def test_cost_per_million_tokens_from_price_and_throughput():
    d = roi.Deployment(price_per_hour=3.6, tokens_per_s=1000.0, utilisation=1.0)
    assert d.cost_per_million == pytest.approx(1.0)  # 3.6 $/h / 3.6M tokens/h
    assert d.tokens_per_dollar == pytest.approx(1e6)
    assert roi.Deployment(3.6, 1000.0, 0.5).cost_per_million == pytest.approx(2.0)


def test_a_2x_optimisation_halves_the_cost_and_pays_back_on_schedule():
    base = roi.Deployment(3.6, 1000.0, 1.0)
    r = roi.optimisation_roi(base, "x2", 2.0, monthly_tokens=1e9, engineering_cost=1000.0)
    assert r.cost_per_million == pytest.approx(0.5)
    assert r.monthly_saving == pytest.approx(500.0)
    assert r.break_even_months == pytest.approx(2.0)


def test_api_break_even_utilisation_and_replica_count():
    base = roi.Deployment(3.6, 1000.0, 0.5)
    assert roi.break_even_utilisation(base, api_price_per_million=2.0) == pytest.approx(0.5)
    assert roi.replicas_for(3.6e6 * roi.HOURS_PER_MONTH * 0.5 * 3 + 1, base) == 4


def test_ratios_are_read_from_appendix_c_results(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"ch05_scheduling": {"data": {"continuous_vs_static": 3.1, "engine_tok_s": 40}},
                                "ch07_speculative": {"data": {"speedup": 1.6, "flag": True}}}))
    assert roi.ratios_from_results(path) == {"ch05_scheduling.continuous_vs_static": 3.1,
                                             "ch07_speculative.speedup": 1.6}


def test_roi_cli_prints_a_table_and_a_json_line(capsys):
    assert roi.main(["--price-per-hour", "3.6", "--tokens-per-s", "1000", "--utilisation", "1",
                     "--ratio", "int4=2", "--api-price-per-1m", "2"]) == 0
    out = parse_json_line(capsys.readouterr().out)
    assert out["cost_per_million"] == pytest.approx(1.0)
    assert out["optimisations"][0]["cost_per_million"] == pytest.approx(0.5)
    assert out["tokens_per_s_source"] == "given"


def test_roi_cli_bad_input_is_one_sentence(capsys):
    with pytest.raises(SystemExit) as exc:
        roi.main(["--tokens-per-s", "100"])
    assert exc.value.code == 2
    assert "give --price-per-hour or --gpu" in capsys.readouterr().err


def test_roi_takes_the_gpu_price_from_ch02s_table(capsys):
    from ch02_gpu.gpus import find_gpu

    assert roi.main(["--gpu", "H100", "--tokens-per-s", "1000", "--json"]) == 0
    out = parse_json_line(capsys.readouterr().out)
    assert out["price_per_hour"] == find_gpu("H100").price_usd_per_hour
    assert out["price_source"].startswith("ch02 table")


def test_spot_savings_arithmetic_and_break_even():
    p = spot.SpotPlan(on_demand_per_hour=3.0, spot_per_hour=1.0, interruptions_per_hour=1.0, recovery_s=360)
    assert p.lost_fraction == pytest.approx(0.1)
    assert p.effective_spot_per_hour == pytest.approx(1.0 / 0.9)
    assert p.savings == pytest.approx(1 - (1.0 / 0.9) / 3.0)
    # at the break-even rate, spot capacity costs what on-demand does
    be = spot.SpotPlan(3.0, 1.0, p.break_even_interruptions_per_hour, 360)
    assert be.savings == pytest.approx(0.0, abs=1e-9)
    mixed = spot.SpotPlan(3.0, 1.0, 0.0, 360, on_demand_share=0.5)
    assert mixed.blended_per_hour == pytest.approx(2.0)


@pytest.mark.parametrize(("provider", "status", "body", "notice"), [
    ("aws", 404, "Not Found", False), ("aws", 200, '{"action": "terminate", "time": "t"}', True),
    ("gcp", 200, "FALSE", False), ("gcp", 200, "TRUE", True)])
def test_notice_parsing(provider, status, body, notice):
    assert spot.parse_notice(status, body, provider) is notice


def test_watcher_triggers_the_drain_exactly_once_and_survives_metadata_blips():
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 2:
            raise httpx.ConnectError("blip", request=request)
        return httpx.Response(200, text="TRUE") if calls["n"] >= 4 else httpx.Response(200, text="FALSE")

    fired = []
    w = spot.NoticeWatcher("http://metadata/x", lambda: fired.append(1), "gcp", poll_s=0.001,
                           transport=httpx.MockTransport(handler))
    asyncio.run(w.run(max_polls=50))
    assert fired == [1] and w.polls == 4


def test_spot_smoke_cli(capsys):
    assert spot.main(["--smoke", "--json"]) == 0
    out = parse_json_line(capsys.readouterr().out)
    assert out["watcher_demo"]["drain_triggered"] is True


def test_autoscale_more_load_needs_more_replicas_and_lag_costs_slo():
    from ch05_scheduling.scheduler import SchedulerConfig
    from ch05_scheduling.simulator import DEFAULT_COST
    from ch05_scheduling.workload import poisson_arrivals, synthetic_trace, with_arrivals

    cfg = SchedulerConfig()
    base = synthetic_trace(80, 0, mean_prompt=64, mean_output=32)
    need = [autoscale.replicas_needed(with_arrivals(base, poisson_arrivals(80, rate, 0)), 1.0, cfg, DEFAULT_COST)
            for rate in (2.0, 16.0)]
    assert need[0].replicas <= need[1].replicas and need[1].replicas >= 2
    assert all(n.ttft_p99_s <= 1.0 for n in need)
    big = synthetic_trace(400, 1, mean_prompt=64, mean_output=32)
    trace = autoscale.step_trace(2.0, 16.0, 5.0, 20.0, big, 0)
    n_high = need[1].replicas + 1
    quick = autoscale.scale_up_miss(trace, 1, n_high, 5.0, 0.0, 1.0, cfg, DEFAULT_COST)
    slow = autoscale.scale_up_miss(trace, 1, n_high, 5.0, 10.0, 1.0, cfg, DEFAULT_COST)
    assert slow.slo_miss > quick.slo_miss


def test_autoscale_rejects_bad_loads():
    with pytest.raises(UsageError):
        autoscale._floats("1,abc")
