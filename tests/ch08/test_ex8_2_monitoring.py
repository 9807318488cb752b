"""Exercise 8.2 (book 8.4.2): the reader's rules pass promtool, the SLO alert fires exactly when it should
on synthetic series, every panel query and recording rule gives the right number on synthetic series
(two replicas: a query that forgets ``rate``, the per-second unit, the sum over replicas or ``by (le)`` fails),
and against a real Prometheus scraping our server every query and rule returns data and every alert goes
pending."""

from __future__ import annotations

import pytest
import yaml

from ch08_production import promstack as ps
from ch08_production.dashboard import expand

PKG, MOD = "ch08_production", "ex8_2_monitoring"
PANELS = {"qps", "ttft_p99", "tokens_per_s", "kv_cache_usage", "waiting"}


@pytest.fixture
def mod(exercise):
    return exercise(PKG, MOD)


def _write(tmp_path, rules: dict):
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def check_names(mod) -> None:
    rules = mod.build_rules(1.5)
    assert {"job:llm_ttft_seconds:p99_1m", "job:llm_generation_tokens:rate1m"} <= set(ps.record_names(rules))
    assert {"TTFTAboveSLO", "TargetDown"} <= set(ps.alert_names(rules))
    assert set(mod.panel_queries()) >= PANELS


def test_rules_have_the_required_records_and_alerts(mod):
    check_names(mod)


def check_promtool_accepts(mod, tmp_path) -> None:
    proc = ps.promtool("check", "rules", str(_write(tmp_path, mod.build_rules(1.5))))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.prometheus
def test_promtool_accepts_the_rules(mod, tmp_path):
    check_promtool_accepts(mod, tmp_path)


def _ttft_case(name: str, slow: bool, alerts: list) -> dict:
    le_fast, le_slow = ("0+0x40", "0+3x40") if slow else ("0+3x40", "0+3x40")
    return {"name": name, "interval": "15s", "input_series": [
        {"series": 'vllm:time_to_first_token_seconds_bucket{job="llm",le="0.5"}', "values": le_fast},
        {"series": 'vllm:time_to_first_token_seconds_bucket{job="llm",le="5"}', "values": le_slow},
        {"series": 'vllm:time_to_first_token_seconds_bucket{job="llm",le="+Inf"}', "values": le_slow},
        {"series": 'up{job="llm",instance="a"}', "values": "1x40"},
    ], "alert_rule_test": [{"eval_time": "5m", "alertname": "TTFTAboveSLO", "exp_alerts": alerts}]}


def check_slo_alert(mod, tmp_path) -> None:
    rules_path = _write(tmp_path, mod.build_rules(1.5))
    rule = next(r for g in mod.build_rules(1.5)["groups"] for r in g["rules"] if r.get("alert") == "TTFTAboveSLO")
    fired = [{"exp_labels": {"severity": "page", "job": "llm"}, "exp_annotations": rule.get("annotations", {})}]
    spec = {"rule_files": [str(rules_path)], "evaluation_interval": "15s",
            "tests": [_ttft_case("slow", True, fired), _ttft_case("fast", False, [])]}
    test_path = tmp_path / "rules_test.yml"
    test_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = ps.promtool("test", "rules", str(test_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.prometheus
def test_slo_alert_fires_on_slow_first_tokens_only(mod, tmp_path):
    check_slo_alert(mod, tmp_path)


# Two replicas, 15 s apart: a finishes 2 requests/s and emits 100 tokens/s, b 1 request/s and 50 tokens/s;
# every first token of both lands between 0.5 s and 5 s (p99 by linear interpolation: 0.5 + 4.5 * 0.99).
TWO_REPLICAS = [
    ('vllm:request_success_total{job="llm",instance="a"}', "0+30x40"),
    ('vllm:request_success_total{job="llm",instance="b"}', "0+15x40"),
    ('vllm:generation_tokens_total{job="llm",instance="a"}', "0+1500x40"),
    ('vllm:generation_tokens_total{job="llm",instance="b"}', "0+750x40"),
    ('vllm:kv_cache_usage_perc{job="llm",instance="a"}', "0.25x40"),
    ('vllm:kv_cache_usage_perc{job="llm",instance="b"}', "0.75x40"),
    ('vllm:num_requests_waiting{job="llm",instance="a"}', "3x40"),
    ('vllm:num_requests_waiting{job="llm",instance="b"}', "4x40"),
    ('up{job="llm",instance="a"}', "1x40"),
    ('up{job="llm",instance="b"}', "0x40"),
] + [(f'vllm:time_to_first_token_seconds_bucket{{job="llm",instance="{i}",le="{le}"}}', values)
     for i, step in (("a", 20), ("b", 10)) for le, values in (("0.5", "0x40"), ("5", f"0+{step}x40"),
                                                               ("+Inf", f"0+{step}x40"))]
PANEL_VALUES = {"qps": 3.0, "ttft_p99": 0.5 + 4.5 * 0.99, "tokens_per_s": 150.0, "kv_cache_usage": 0.75,
                "waiting": 7.0}
RECORD_VALUES = {"job:llm_ttft_seconds:p99_1m": 0.5 + 4.5 * 0.99, "job:llm_generation_tokens:rate1m": 150.0}


def check_values(mod, tmp_path) -> None:
    """Each panel query is one series with the expected value; each record one series per job; TargetDown
    fires for the replica that is down only."""
    rules_path = _write(tmp_path, mod.build_rules(1.5))
    exprs = []
    for name, expr in mod.panel_queries().items():
        if name in PANEL_VALUES:
            q = expand(expr, job="llm", rate_interval="1m")
            exprs += [{"expr": f"count({q})", "eval_time": "5m", "exp_samples": [{"labels": "{}", "value": 1}]},
                      {"expr": f"sum({q})", "eval_time": "5m",
                       "exp_samples": [{"labels": "{}", "value": PANEL_VALUES[name]}]}]
    exprs += [{"expr": rec, "eval_time": "5m", "exp_samples": [{"labels": f'{rec}{{job="llm"}}', "value": v}]}
              for rec, v in RECORD_VALUES.items()]
    rule = next(r for g in mod.build_rules(1.5)["groups"] for r in g["rules"] if r.get("alert") == "TargetDown")
    down = [{"exp_labels": {"severity": "page", "job": "llm", "instance": "b"},
             "exp_annotations": rule.get("annotations", {})}]
    spec = {"rule_files": [str(rules_path)], "evaluation_interval": "15s", "tests": [
        {"name": "two replicas", "interval": "15s",
         "input_series": [{"series": s, "values": v} for s, v in TWO_REPLICAS], "promql_expr_test": exprs,
         "alert_rule_test": [{"eval_time": "5m", "alertname": "TargetDown", "exp_alerts": down}]}]}
    test_path = tmp_path / "values_test.yml"
    test_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = ps.promtool("test", "rules", str(test_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.prometheus
def test_every_query_and_record_gives_the_right_number_on_two_replicas(mod, tmp_path):
    check_values(mod, tmp_path)


@pytest.mark.prometheus
def test_real_prometheus_returns_data_for_every_query_and_fires_every_alert(mod, tiny_model_dir):
    dashboard = {"panels": [{"title": k, "targets": [{"expr": v}]} for k, v in mod.panel_queries().items()]}
    srv = ps.serve_in_thread(str(tiny_model_dir), "tiny", cost_per_hour=1.0)
    try:
        check = ps.check_stack(srv.url.removeprefix("http://"), "tiny", requests=4, max_tokens=4,
                               dashboard=dashboard, rules=mod.build_rules(1.5))
    finally:
        srv.stop(timeout_s=30)
    assert not check.rule_errors(), check.rule_errors()
    assert not check.no_data(), f"no data: {check.no_data()}"
    assert not check.quiet_alerts(), check.alerts
