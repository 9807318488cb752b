"""The monitoring stack (book 8.4.2): promtool, rule unit tests, and a real Prometheus scraping a real server.

The acceptance test starts the Debian ``prometheus`` binary on a free loopback port with the shipped
prometheus.yml (intervals shortened to 1 s) scraping our server while it serves a short burst of
requests, then asserts that every Grafana panel query and every recording rule returns a finite sample
and that every alert (thresholds lowered; a dead target for LLMTargetDown) goes pending or firing.
"""

from __future__ import annotations

import json

import pytest
import yaml

from ch08_production import dashboard as dash
from ch08_production import promstack as ps

REQUIRED_PANELS = ("Requests per second", "Time to first token", "Time per output token", "Inter-token latency",
                   "Tokens per second", "running / waiting", "KV cache usage", "Preemptions", "Error ratio",
                   "Cost per hour", "tokens per dollar")
REQUIRED_ALERTS = {"LLMTTFTP99AboveSLO", "LLMHighErrorRatio", "LLMKVCacheSaturated", "LLMQueueGrowing",
                   "LLMTargetDown"}
COST_METRICS = ("llmic:",)  # exported by our server only; vLLM has no notion of price


def test_committed_dashboard_json_matches_its_generator():
    assert dash.DASHBOARD_PATH.read_text() == dash.dashboard_json(), \
        "run: python -m ch08_production.dashboard --write"


def test_dashboard_has_a_panel_for_every_signal_the_chapter_names():
    titles = " | ".join(p["title"] for p in dash.build_dashboard()["panels"]).lower()
    for needle in REQUIRED_PANELS:
        assert needle.lower() in titles, needle


def test_every_panel_query_is_expanded_without_leftover_variables():
    queries = dash.dashboard_queries(json.loads(dash.DASHBOARD_PATH.read_text()))
    assert len(queries) >= 20
    for _, expr in queries:
        assert "$" not in dash.expand(expr)


def test_rules_define_every_required_alert_in_threshold_form():
    rules = ps.load_yaml(ps.RULES_YML)
    assert set(ps.alert_names(rules)) >= REQUIRED_ALERTS
    lowered = ps.lowered_rules(rules)
    for group in lowered["groups"]:
        for rule in group["rules"]:
            if "alert" in rule and rule["alert"] != "LLMTargetDown":
                assert "> -1.0" in rule["expr"] and not ps.ALERT_THRESHOLD.search(rule["expr"].replace(
                    "> -1.0", "")), rule["expr"]


def test_local_config_points_the_llm_job_at_loopback_targets():
    cfg = ps.local_config(ps.load_yaml(ps.PROMETHEUS_YML), ["127.0.0.1:1"], dead_targets=["127.0.0.1:2"])
    assert cfg["global"]["scrape_interval"] == "1s"
    assert [j["job_name"] for j in cfg["scrape_configs"]] == ["llm"]
    targets = [t for s in cfg["scrape_configs"][0]["static_configs"] for t in s["targets"]]
    assert targets == ["127.0.0.1:1", "127.0.0.1:2"]
    assert cfg["rule_files"] == ["rules.yml"]


@pytest.mark.prometheus
def test_promtool_accepts_the_config_and_the_rules():
    for args in (("check", "config", str(ps.PROMETHEUS_YML)), ("check", "rules", str(ps.RULES_YML))):
        proc = ps.promtool(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.prometheus
def test_promtool_rule_unit_tests_fire_exactly_the_expected_alerts():
    proc = ps.promtool("test", "rules", str(ps.MONITORING_DIR / "rules_test.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.prometheus
def test_grafana_provisioning_points_at_the_dashboard_folder_and_datasource_uid():
    prov = ps.MONITORING_DIR / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["uid"] == dash.DATASOURCE_UID
    boards = yaml.safe_load((prov / "dashboards" / "dashboards.yml").read_text())
    assert boards["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def _assert_complete(check: ps.StackCheck, ignore: tuple[str, ...] = ()) -> None:
    assert check.load["completed"] >= 1, check.load
    assert not check.rule_errors(), check.rule_errors()
    assert not check.no_data(ignore), f"queries without data: {check.no_data(ignore)}"
    assert not check.quiet_alerts(), f"alerts that never went pending: {check.quiet_alerts()} {check.alerts}"


@pytest.fixture
def our_server(tiny_model_dir):
    """Our server (transformers backend, tiny random model, $2/hour) on a free loopback port."""
    srv = ps.serve_in_thread(str(tiny_model_dir), "tiny", cost_per_hour=2.0)
    yield srv
    srv.stop(timeout_s=30)


@pytest.mark.prometheus
def test_real_prometheus_on_our_server_every_panel_rule_and_alert_has_data(our_server):
    check = ps.check_stack(our_server.url.removeprefix("http://"), "tiny", requests=6, max_tokens=6)
    _assert_complete(check)
    by_name = {q.name: q.value for q in check.queries}
    assert by_name["job:llm_cost_dollars_per_hour:sum"] == pytest.approx(2.0)
    assert by_name["Cost per hour"] == pytest.approx(2.0)


@pytest.mark.prometheus
@pytest.mark.vllm
@pytest.mark.slow
def test_real_prometheus_on_vllm_the_same_dashboard_has_data(vllm_server):
    from ch03_env.vllm_server import SERVED_MODEL_NAME

    check = ps.check_stack(vllm_server.removeprefix("http://"), SERVED_MODEL_NAME, requests=4, max_tokens=8)
    # Every dashboard panel works on vLLM (cost panels fall back to $price_per_hour x replicas up);
    # only the cost recording rules need our server's llmic:* metrics.
    dashboard_names = {t for t, _ in dash.dashboard_queries(dash.build_dashboard())}
    assert not [n for n in check.no_data() if n in dashboard_names]
    _assert_complete(check, ignore=COST_METRICS)
