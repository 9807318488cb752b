"""Exercise 8.3 (book 8.7): the reader's ROI queries, evaluated by promtool on synthetic series, give the
exact dollars (one replica, and two live replicas plus one down); the dashboard JSON has one stat panel per query; the arithmetic matches ch08's roi."""

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


def check_cost_per_million(mod) -> None:
    for price, tps in ((3.6, 100.0), (2.99, 2400.0), (0.2, 7.5)):
        assert mod.cost_per_million(price, tps) == pytest.approx(Deployment(price, tps).cost_per_million)


def check_dashboard(mod) -> None:
    dash = mod.roi_dashboard(1.0)
    assert dash["uid"] == "llm-roi"
    panels = {p["title"]: p for p in dash["panels"]}
    assert set(panels) == set(KEYS)
    for key, panel in panels.items():
        assert panel["type"] == "stat"
        assert panel["datasource"]["uid"] == "prometheus"
        assert panel["targets"][0]["expr"] == mod.roi_queries(1.0, "$__rate_interval")[key]
        assert "$" not in expand(panel["targets"][0]["expr"])


def test_cost_per_million_matches_the_roi_module(mod):
    check_cost_per_million(mod)


def test_dashboard_has_one_stat_panel_per_query(mod):
    check_dashboard(mod)


def _one_replica(with_gauge: bool) -> list[dict]:
    series = [{"series": 'vllm:generation_tokens_total{job="llm",instance="a"}', "values": "0+1500x40"},
              {"series": 'up{job="llm",instance="a"}', "values": "1x40"}]  # 1500 tokens / 15 s = 100/s
    if with_gauge:
        series.append({"series": 'llmic:cost_per_hour_dollars{job="llm",instance="a"}', "values": "3.6x40"})
    return series


def _two_live_one_down(with_gauge: bool) -> list[dict]:
    """a and b each 100 tokens/s at $1.80/h, c down: $3.60/h for 200 tokens/s."""
    series = [{"series": f'vllm:generation_tokens_total{{job="llm",instance="{i}"}}', "values": "0+1500x40"}
              for i in "ab"]
    series += [{"series": f'up{{job="llm",instance="{i}"}}', "values": v} for i, v in (("a", "1x40"),
                                                                                     ("b", "1x40"), ("c", "0x40"))]
    if with_gauge:
        series += [{"series": f'llmic:cost_per_hour_dollars{{job="llm",instance="{i}"}}', "values": "1.8x40"}
                   for i in "ab"]
    return series


def _case(name: str, series: list[dict], expected: dict[str, float]) -> dict:
    return {"name": name, "interval": "15s", "input_series": series, "promql_expr_test": [
        {"expr": f"roi:{k}", "eval_time": "5m", "exp_samples": [{"labels": f"roi:{k}", "value": v}]}
        for k, v in expected.items()]}


def check_exact_dollars(mod, tmp_path, with_gauge: bool) -> None:
    """One replica at $3.60/h and 100 tokens/s; two live replicas at $1.80/h each (and one down) with
    200 tokens/s. With the gauge exported, the price argument must not be used."""
    cases = [("100 tokens/s at $3.60/h", _one_replica, 3.6, {"cost_per_hour": 3.6, "tokens_per_dollar": 100_000,
                                                             "cost_per_million_tokens": 10}),
             ("2 x 100 tokens/s at $1.80/h, one replica down", _two_live_one_down, 1.8,
              {"cost_per_hour": 3.6, "tokens_per_dollar": 200_000, "cost_per_million_tokens": 5})]
    for name, series, price, expected in cases:
        queries = mod.roi_queries(9.99 if with_gauge else price, "1m")
        assert set(queries) >= set(KEYS)
        rules = {"groups": [{"name": "roi", "rules": [{"record": f"roi:{k}", "expr": queries[k]} for k in KEYS]}]}
        folder = tmp_path / name.split()[0]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "roi.yml").write_text(yaml.safe_dump(rules))
        check = ps.promtool("check", "rules", str(folder / "roi.yml"))
        assert check.returncode == 0, check.stdout + check.stderr
        spec = {"rule_files": ["roi.yml"], "evaluation_interval": "15s",
                "tests": [_case(name, series(with_gauge), expected)]}
        (folder / "roi_test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
        proc = ps.promtool("test", "rules", str(folder / "roi_test.yml"))
        assert proc.returncode == 0, f"{name}: " + proc.stdout + proc.stderr


@pytest.mark.prometheus
@pytest.mark.parametrize("with_gauge", [True, False])
def test_queries_give_exact_dollars_on_synthetic_series(mod, tmp_path, with_gauge):
    check_exact_dollars(mod, tmp_path, with_gauge)
