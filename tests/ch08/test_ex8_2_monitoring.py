"""Exercise 8.2 (book 8.4.2): the reader's rules pass promtool, the SLO alert fires exactly when it should
on synthetic series, and against a real Prometheus scraping our server every query and rule returns
data and every alert goes pending."""

from __future__ import annotations

import pytest
import yaml

from ch08_production import promstack as ps

PKG, MOD = "ch08_production", "ex8_2_monitoring"
PANELS = {"qps", "ttft_p99", "tokens_per_s", "kv_cache_usage", "waiting"}


@pytest.fixture
def mod(exercise):
    return exercise(PKG, MOD)


def _write(tmp_path, rules: dict):
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def test_rules_have_the_required_records_and_alerts(mod):
    rules = mod.build_rules(1.5)
    assert {"job:llm_ttft_seconds:p99_1m", "job:llm_generation_tokens:rate1m"} <= set(ps.record_names(rules))
    assert {"TTFTAboveSLO", "TargetDown"} <= set(ps.alert_names(rules))
    assert set(mod.panel_queries()) >= PANELS


@pytest.mark.prometheus
def test_promtool_accepts_the_rules(mod, tmp_path):
    proc = ps.promtool("check", "rules", str(_write(tmp_path, mod.build_rules(1.5))))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _ttft_case(name: str, slow: bool, alerts: list) -> dict:
    le_fast, le_slow = ("0+0x40", "0+3x40") if slow else ("0+3x40", "0+3x40")
    return {"name": name, "interval": "15s", "input_series": [
        {"series": 'vllm:time_to_first_token_seconds_bucket{job="llm",le="0.5"}', "values": le_fast},
        {"series": 'vllm:time_to_first_token_seconds_bucket{job="llm",le="5"}', "values": le_slow},
        {"series": 'vllm:time_to_first_token_seconds_bucket{job="llm",le="+Inf"}', "values": le_slow},
        {"series": 'up{job="llm",instance="a"}', "values": "1x40"},
    ], "alert_rule_test": [{"eval_time": "5m", "alertname": "TTFTAboveSLO", "exp_alerts": alerts}]}


@pytest.mark.prometheus
def test_slo_alert_fires_on_slow_first_tokens_only(mod, tmp_path):
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
