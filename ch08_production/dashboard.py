"""The Grafana dashboard for LLM serving, defined as data and written as JSON (book 8.4.2, 8.7.1).

Every panel is one or more PromQL queries over the metric names our server shares with vLLM
(``vllm:*``, ``http_requests_total``) plus our cost metrics (``llmic:*``). Cost panels fall back to the
dashboard variable ``$price_per_hour`` times the number of live replicas when the target does not
export ``llmic:cost_per_hour_dollars`` (a plain vLLM server), so one dashboard serves both.

The committed file ``ch08_production/monitoring/grafana/dashboards/llm-serving.json`` is the output of::

    python -m ch08_production.dashboard --write      # regenerate the JSON (a test checks it is current)
    python -m ch08_production.dashboard --list       # every panel and its queries

Queries use Grafana's ``$job`` and ``$__rate_interval``; :func:`expand` substitutes them so tests can send
exactly these queries to a real Prometheus.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from common.cli import make_parser

MONITORING_DIR = Path(__file__).resolve().parent / "monitoring"
DASHBOARD_PATH = MONITORING_DIR / "grafana" / "dashboards" / "llm-serving.json"
DATASOURCE_UID = "prometheus"  # provisioned in grafana/provisioning/datasources/prometheus.yml
DEFAULT_PRICE_PER_HOUR = "1.0"

J = '{job=~"$job"}'
RI = "$__rate_interval"
# $/hour of the selected replicas: our server's own gauge, else the price variable x live replicas.
COST_PER_HOUR = (f'(sum(llmic:cost_per_hour_dollars{J}) or '
                 f'(count(up{J} == 1) * $price_per_hour))')
GEN_TOKENS_PER_S = f"sum(rate(vllm:generation_tokens_total{J}[{RI}]))"


def _quantile(q: float, metric: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{J}[{RI}])))"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    targets: tuple[Target, ...]
    description: str = ""
    kind: str = "timeseries"  # or "stat"


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def _latency(title: str, metric: str, desc: str) -> Panel:
    return Panel(title, "s", tuple(Target(_quantile(q, metric), f"p{int(q * 100)}") for q in (0.5, 0.9, 0.99)),
                 desc)


ROWS: tuple[Row, ...] = (
    Row("Traffic", (
        Panel("Requests per second (finished)", "reqps", (
            Target(f"sum by (finished_reason) (rate(vllm:request_success_total{J}[{RI}]))", "{{finished_reason}}"),
        ), "Requests that finished, by finish reason (stop, length, abort)."),
        Panel("HTTP requests by status", "reqps", (
            Target(f'sum by (status) (rate(http_requests_total{{job=~"$job",handler=~"/v1/.+"}}[{RI}]))',
                   "{{status}}"),
        ), "Every API call by status class; 4xx are the client's, 5xx are ours."),
        Panel("Error ratio (5xx / all)", "percentunit", (
            Target(f'(sum(rate(http_requests_total{{job=~"$job",handler=~"/v1/.+",status=~"5.."}}[{RI}])) '
                   f'or vector(0)) / sum(rate(http_requests_total{{job=~"$job",handler=~"/v1/.+"}}[{RI}]))',
                   "5xx ratio"),
        ), "The alert LLMHighErrorRatio fires above 5%.", "stat"),
        Panel("Replicas up", "none", (Target(f"sum(up{J})", "up"),), "Scrape targets answering /metrics.",
              "stat"),
    )),
    Row("Latency", (
        _latency("Time to first token (TTFT)", "vllm:time_to_first_token_seconds",
                 "Queueing + prefill. The SLO alert watches p99."),
        _latency("Inter-token latency (ITL)", "vllm:inter_token_latency_seconds",
                 "Gap between consecutive output tokens: what a streaming user feels."),
        Panel("Time per output token (TPOT, mean)", "s", (
            Target(f"sum(rate(vllm:inter_token_latency_seconds_sum{J}[{RI}])) / "
                   f"sum(rate(vllm:inter_token_latency_seconds_count{J}[{RI}]))", "mean TPOT"),
        ), "Token-weighted mean of the decode gaps; equals the mean TPOT over all output tokens."),
        _latency("End-to-end request latency", "vllm:e2e_request_latency_seconds", "Arrival to last token."),
    )),
    Row("Throughput and engine state", (
        Panel("Tokens per second", "none", (
            Target(f"sum(rate(vllm:prompt_tokens_total{J}[{RI}]))", "prompt (prefill)"),
            Target(GEN_TOKENS_PER_S, "generation (decode)"),
        ), "Prefill and decode tokens processed per second."),
        Panel("Requests running / waiting", "none", (
            Target(f"sum(vllm:num_requests_running{J})", "running"),
            Target(f"sum(vllm:num_requests_waiting{J})", "waiting"),
        ), "Waiting that keeps growing means the replicas are saturated: scale out (HPA metric)."),
        Panel("KV cache usage", "percentunit", (
            Target(f"max by (instance) (vllm:kv_cache_usage_perc{J})", "{{instance}}"),
        ), "Near 100% means preemptions are next."),
        Panel("Preemptions per second", "none", (
            Target(f"sum(rate(vllm:num_preemptions_total{J}[{RI}]))", "preemptions"),
        ), "Requests evicted from the KV cache and recomputed later: wasted work."),
    )),
    Row("Cost and ROI", (
        Panel("Cost per hour", "currencyUSD", (Target(COST_PER_HOUR, "$/hour"),),
              "Configured $/hour of the replicas (llmic:cost_per_hour_dollars, else $price_per_hour x up).",
              "stat"),
        Panel("Output tokens per dollar", "none", (
            Target(f"{GEN_TOKENS_PER_S} * 3600 / {COST_PER_HOUR}", "tokens/$"),
        ), "Generation throughput divided by the hourly bill.", "stat"),
        Panel("Cost per 1M output tokens", "currencyUSD", (
            Target(f"{COST_PER_HOUR} / ({GEN_TOKENS_PER_S} * 3600) * 1e6", "$/1M tokens"),
        ), "The number to compare with an API's price list (8.7).", "stat"),
        Panel("Busy share of the bill (last hour)", "percentunit", (
            Target(f"(sum(increase(llmic:request_cost_dollars_sum{J}[1h])) or vector(0)) / "
                   f"(sum(increase(llmic:cost_dollars_total{J}[1h])) or "
                   f"(count(up{J} == 1) * $price_per_hour))", "busy / total"),
        ), "Dollars attributed to requests over dollars billed; the rest paid for idle time. Requests are "
           "charged when they finish, so windows shorter than a request's latency can exceed 100%.", "stat"),
    )),
)


def panels() -> list[Panel]:
    return [p for row in ROWS for p in row.panels]


def expand(expr: str, *, job: str = ".+", rate_interval: str = "1m",
           price_per_hour: str = DEFAULT_PRICE_PER_HOUR) -> str:
    """A dashboard query with Grafana's variables substituted, ready for Prometheus's HTTP API."""
    return (expr.replace("$__rate_interval", rate_interval).replace("$job", job)
            .replace("$price_per_hour", price_per_hour))


def build_dashboard() -> dict:
    """The dashboard as Grafana's JSON model (schemaVersion 39, Grafana 10/11)."""
    ds = {"type": "prometheus", "uid": DATASOURCE_UID}
    out, y, pid = [], 0, 1
    for row in ROWS:
        out.append({"type": "row", "title": row.title, "id": pid, "collapsed": False,
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        for i, p in enumerate(row.panels):
            out.append({
                "type": p.kind, "title": p.title, "description": p.description, "id": pid, "datasource": ds,
                "gridPos": {"h": 8, "w": 6, "x": 6 * (i % 4), "y": y + 8 * (i // 4)},
                "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if p.kind == "timeseries"
                else {"reduceOptions": {"calcs": ["lastNotNull"]}},
                "targets": [{"refId": chr(ord("A") + k), "datasource": ds, "expr": t.expr,
                             "legendFormat": t.legend} for k, t in enumerate(p.targets)],
            })
            pid += 1
        y += 8 * ((len(row.panels) + 3) // 4)
    return {
        "uid": "llm-serving", "title": "LLM serving (vLLM-compatible metrics)", "tags": ["llm", "vllm", "ch08"],
        "schemaVersion": 39, "version": 1, "editable": True, "refresh": "10s", "timezone": "browser",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": [
            {"name": "job", "type": "query", "datasource": ds, "label": "job",
             "query": {"query": "label_values(vllm:num_requests_running, job)", "refId": "job"},
             "definition": "label_values(vllm:num_requests_running, job)", "refresh": 2,
             "includeAll": True, "multi": True, "allValue": ".+",
             "current": {"text": "All", "value": "$__all"}},
            {"name": "price_per_hour", "type": "textbox", "label": "$/hour per replica (if not exported)",
             "query": DEFAULT_PRICE_PER_HOUR,
             "current": {"text": DEFAULT_PRICE_PER_HOUR, "value": DEFAULT_PRICE_PER_HOUR}},
        ]},
        "annotations": {"list": []},
        "panels": out,
    }


def dashboard_json() -> str:
    return json.dumps(build_dashboard(), indent=2, ensure_ascii=False) + "\n"


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """``(panel title, expr)`` for every query of a Grafana dashboard JSON model (rows skipped)."""
    found = []
    for p in dashboard.get("panels", []):
        for sub in [p, *p.get("panels", [])]:
            for t in sub.get("targets", []):
                if t.get("expr"):
                    found.append((sub.get("title", "?"), t["expr"]))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch08_production.dashboard", __doc__)
    parser.add_argument("--write", action="store_true", help=f"write the JSON to {DASHBOARD_PATH}")
    parser.add_argument("--list", action="store_true", help="print every panel's queries")
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is out of date")
    args = parser.parse_args(argv)
    text = dashboard_json()
    if args.write:
        DASHBOARD_PATH.parent.mkdir(parents=True, exist_ok=True)
        DASHBOARD_PATH.write_text(text)
        print(f"wrote {DASHBOARD_PATH} ({len(panels())} panels)")
    if args.check:
        current = DASHBOARD_PATH.read_text() if DASHBOARD_PATH.is_file() else ""
        if current != text:
            print(f"{DASHBOARD_PATH} is out of date: run python -m ch08_production.dashboard --write",
                  file=sys.stderr)
            return 1
        print("dashboard JSON is current")
    if args.list or not (args.write or args.check):
        for title, expr in dashboard_queries(build_dashboard()):
            print(f"{title}: {expr}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
