"""Exercise 8.3 (book 8.7): the reader's ROI queries, evaluated by promtool on synthetic series, give the
exact dollars; the dashboard JSON has one stat panel per query; the arithmetic matches ch08's roi."""

from __future__ import annotations

import pytest
import yaml

from ch08_production import promstack as ps
from ch08_production.dashboard import expand
from ch08_production.roi import Deployment

PKG, MOD = "ch08_production", "ex8_3_roi_dashboard"
KEYS = ("cost_per_hour", "tokens_per_dollar", "cost_per_million_tokens")


@pytest.fixture
def mod(exercise):
    return exercise(PKG, MOD)


def test_cost_per_million_matches_the_roi_module(mod):
    for price, tps in ((3.6, 100.0), (2.99, 2400.0), (0.2, 7.5)):
        assert mod.cost_per_million(price, tps) == pytest.approx(Deployment(price, tps).cost_per_million)


def test_dashboard_has_one_stat_panel_per_query(mod):
    dash = mod.roi_dashboard(1.0)
    assert dash["uid"] == "llm-roi"
    panels = {p["title"]: p for p in dash["panels"]}
    assert set(panels) == set(KEYS)
    for key, panel in panels.items():
        assert panel["type"] == "stat"
        assert panel["datasource"]["uid"] == "prometheus"
        assert panel["targets"][0]["expr"] == mod.roi_queries(1.0, "$__rate_interval")[key]
        assert "$" not in expand(panel["targets"][0]["expr"])


def _case(name: str, with_gauge: bool, expected: dict[str, float]) -> dict:
    series = [{"series": 'vllm:generation_tokens_total{job="llm",instance="a"}', "values": "0+1500x40"},
              {"series": 'up{job="llm",instance="a"}', "values": "1x40"}]  # 1500 tokens / 15 s = 100/s
    if with_gauge:
        series.append({"series": 'llmic:cost_per_hour_dollars{job="llm",instance="a"}', "values": "3.6x40"})
    return {"name": name, "interval": "15s", "input_series": series, "promql_expr_test": [
        {"expr": f"roi:{k}", "eval_time": "5m", "exp_samples": [{"labels": f"roi:{k}", "value": v}]}
        for k, v in expected.items()]}


@pytest.mark.prometheus
@pytest.mark.parametrize("with_gauge", [True, False])
def test_queries_give_exact_dollars_on_synthetic_series(mod, tmp_path, with_gauge):
    price = 9.99 if with_gauge else 3.6  # with the gauge exported, the argument must not be used
    queries = mod.roi_queries(price, "1m")
    assert set(queries) >= set(KEYS)
    rules = {"groups": [{"name": "roi", "rules": [{"record": f"roi:{k}", "expr": queries[k]} for k in KEYS]}]}
    (tmp_path / "roi.yml").write_text(yaml.safe_dump(rules))
    check = ps.promtool("check", "rules", str(tmp_path / "roi.yml"))
    assert check.returncode == 0, check.stdout + check.stderr
    expected = {"cost_per_hour": 3.6, "tokens_per_dollar": 100_000, "cost_per_million_tokens": 10}
    spec = {"rule_files": ["roi.yml"], "evaluation_interval": "15s",
            "tests": [_case("100 tokens/s at $3.60/h", with_gauge, expected)]}
    (tmp_path / "roi_test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = ps.promtool("test", "rules", str(tmp_path / "roi_test.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
