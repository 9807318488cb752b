"""Run the real Prometheus against an LLM server and check every dashboard query and alert (book 8.4.2).

The monitoring files in ``ch08_production/monitoring/`` are what docker compose mounts. This module
starts the Debian ``prometheus`` binary with that configuration, rewritten for a quick local check
(1 s scrape and evaluation, loopback targets, a temporary TSDB), and asks Prometheus's HTTP API:

* does every target answer (``up == 1``)? does every rule evaluate without error?
* does every Grafana panel query return data (at least one finite sample)?
* with each alert's threshold lowered, does every alert go pending or firing? (``LLMTargetDown`` is
  made true by a deliberately dead target.)

Usage::

    python -m ch08_production.promstack --target 127.0.0.1:8000          # an already running server
    python -m ch08_production.promstack --smoke                           # starts our server itself

It prints one row per query and ends with a JSON line; exit code 1 when any query returns nothing.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from ch08_production.prometheus_proc import (
    PrometheusProcess,
    PrometheusUnavailable,
    QueryResult,
    prometheus_binary,
    promtool,
)
from common.cli import make_parser

__all__ = ["PrometheusProcess", "PrometheusUnavailable", "QueryResult", "StackCheck", "check_stack",
           "drive_load", "local_config", "lowered_rules", "prometheus_binary", "promtool", "serve_in_thread"]

MONITORING_DIR = Path(__file__).resolve().parent / "monitoring"
PROMETHEUS_YML = MONITORING_DIR / "prometheus.yml"
RULES_YML = MONITORING_DIR / "rules.yml"
ALERT_THRESHOLD = re.compile(r">\s*(-?[0-9.]+(?:e-?[0-9]+)?)")


def local_config(base: dict, targets: Sequence[str], *, interval: str = "1s", dead_targets: Sequence[str] = (),
                 job: str = "llm") -> dict:
    """The shipped config with short intervals and the ``llm`` job pointed at loopback ``targets``."""
    cfg = json.loads(json.dumps(base))  # deep copy
    cfg["global"].update(scrape_interval=interval, evaluation_interval=interval, scrape_timeout=interval)
    jobs = [j for j in cfg["scrape_configs"] if j["job_name"] == job]
    if not jobs:
        raise ValueError(f"prometheus.yml has no job named {job!r}")
    static = [{"targets": list(targets), "labels": {"tier": "serving"}}]
    if dead_targets:
        static.append({"targets": list(dead_targets), "labels": {"tier": "dead-on-purpose"}})
    jobs[0]["static_configs"] = static
    cfg["scrape_configs"] = jobs  # drop self-scrape: its port is not ours
    return cfg


def lowered_rules(rules: dict, value: float = -1.0) -> dict:
    """A copy of the rule groups with every alert threshold (``> N``) replaced by ``value``."""
    out = json.loads(json.dumps(rules))
    for group in out["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["expr"] = ALERT_THRESHOLD.sub(f"> {value}", rule["expr"])
    return out


def alert_names(rules: dict) -> list[str]:
    return [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]


def record_names(rules: dict) -> list[str]:
    return [r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r]


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def check_dashboard(prom: PrometheusProcess, dashboard: dict, rate_interval: str = "30s") -> list[QueryResult]:
    """Every panel query of a Grafana dashboard, variables expanded, evaluated now."""
    from ch08_production.dashboard import dashboard_queries, expand

    return [prom.evaluate(title, expand(expr, rate_interval=rate_interval))
            for title, expr in dashboard_queries(dashboard)]


def check_records(prom: PrometheusProcess, rules: dict) -> list[QueryResult]:
    """Every recording rule's output series, queried by name (``expr`` keeps the rule's expression)."""
    out = []
    for g in rules["groups"]:
        for r in g["rules"]:
            if "record" in r:
                res = prom.evaluate(r["record"], r["record"])
                out.append(dataclasses.replace(res, expr=r["expr"]))
    return out


def alert_states(prom: PrometheusProcess) -> dict[str, str]:
    """``{alert name: inactive|pending|firing}`` plus ``{record/alert name + ':health': ok|err}``."""
    out = {}
    for r in prom.rules_state():
        if r["type"] == "alerting":
            out[r["name"]] = r["state"]
        if r.get("health") != "ok":
            out[r["name"] + ":error"] = r.get("lastError", r.get("health", "?"))
    return out


def serve_in_thread(model: str = "smollm2-135m", served_model_name: str | None = None,
                    cost_per_hour: float = 1.0):
    """Our server (transformers backend) on a free loopback port in this process; ``.stop()`` when done."""
    from ch03_env.vllm_server import free_port
    from ch08_production.app import create_app
    from ch08_production.backends.hf import TransformersBackend
    from ch08_production.config import ServerConfig
    from ch08_production.launch import BackgroundServer
    from ch08_production.state import ServerState
    from common.loader import resolve_model_path

    port = free_port()
    cfg = ServerConfig(port=port, backend="transformers", model=model, served_model_name=served_model_name,
                       cost_per_hour=cost_per_hour, log_level="warning", json_logs=False)
    state = ServerState(cfg, TransformersBackend(resolve_model_path(model), cfg.model_name))
    return BackgroundServer(create_app(state), state, port).start()


def _run_smoke_server():
    return serve_in_thread()


def drive_load(base_url: str, model: str, n: int = 8, max_tokens: int = 8, concurrency: int = 4,
               warmup_s: float = 2.5) -> dict:
    """A short burst of streaming completions (ch03's benchmark client) plus one bad request (a 4xx)."""
    import httpx

    from ch03_env.bench import BenchConfig, run_benchmark
    from common.datasets import WorkloadRequest

    reqs = [WorkloadRequest(f"load-{i}", f"Question {i}: name a colour.", 8, max_tokens) for i in range(n)]
    cfg = BenchConfig(base_url=base_url, model=model, num_requests=n, concurrency=concurrency, ignore_eos=False)
    # Counter series appear on their first increment; rate() needs a sample before the burst too, or a
    # series born at its final value shows no increase (the "missing initial zero"). So: one request and
    # one bad request first, a few scrapes, then the burst and the bad request again.
    def bad_request() -> None:
        httpx.post(base_url + "/v1/completions", json={"model": model, "prompt": "x", "max_tokens": -1},
                   timeout=30)
    run_benchmark(dataclasses.replace(cfg, num_requests=1), reqs[:1])
    bad_request()
    time.sleep(warmup_s)
    report = run_benchmark(cfg, reqs)
    bad_request()
    return report.summary


@dataclass
class StackCheck:
    """What :func:`check_stack` saw: the load it drove, every query's result and every alert's state."""

    target: str
    load: dict
    queries: list[QueryResult]
    alerts: dict[str, str]
    expected_alerts: list[str]

    def no_data(self, ignore: Sequence[str] = ()) -> list[str]:
        """Queries without a finite sample, except those mentioning any of ``ignore`` (metric names)."""
        return [q.name for q in self.queries if not q.ok and not any(i in q.expr for i in ignore)]

    def quiet_alerts(self) -> list[str]:
        return [a for a in self.expected_alerts if self.alerts.get(a) not in ("pending", "firing")]

    def rule_errors(self) -> dict[str, str]:
        return {k: v for k, v in self.alerts.items() if k.endswith(":error")}


def check_stack(target: str, model: str, *, requests: int = 8, max_tokens: int = 8,
                dashboard: dict | None = None, rules: dict | None = None, base_config: dict | None = None,
                settle_s: float = 3.0) -> StackCheck:
    """Start Prometheus on ``target`` (host:port) plus a dead target, drive load, evaluate everything.

    Alert thresholds are lowered (:func:`lowered_rules`), so every alert should be pending or firing.
    """
    from ch03_env.vllm_server import free_port
    from ch08_production.dashboard import DASHBOARD_PATH

    dashboard = dashboard if dashboard is not None else json.loads(DASHBOARD_PATH.read_text())
    rules = rules if rules is not None else load_yaml(RULES_YML)
    base = base_config if base_config is not None else load_yaml(PROMETHEUS_YML)
    dead = f"127.0.0.1:{free_port()}"
    with PrometheusProcess(local_config(base, [target], dead_targets=[dead]), lowered_rules(rules)) as prom:
        if not prom.wait_for_scrapes([target]):
            raise PrometheusUnavailable(f"Prometheus could not scrape {target}/metrics: {prom.targets()}")
        load = drive_load(f"http://{target}", model, n=requests, max_tokens=max_tokens)
        time.sleep(settle_s)  # a few more scrapes and rule evaluations after the burst
        results = check_dashboard(prom, dashboard) + check_records(prom, rules)
        states = alert_states(prom)
    return StackCheck(target, load, results, states, alert_names(rules))


def main(argv: list[str] | None = None) -> int:
    from common.bench import stamp_dict
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch08_production.promstack", __doc__)
    parser.add_argument("--target", help="host:port of a running server (default with --smoke: start ours)")
    parser.add_argument("--model", default="smollm2-135m", help="model name the target serves")
    parser.add_argument("--smoke", action="store_true", help="start our server on the embedded model, then check")
    parser.add_argument("--requests", type=int, default=4, help="requests in the load burst")
    args = parser.parse_args(argv)
    if not args.target and not args.smoke:
        parser.error("give --target host:port, or --smoke to start our server")
    try:
        prometheus_binary()
    except PrometheusUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = _run_smoke_server() if not args.target else None
    target = args.target or server.url.removeprefix("http://")
    try:
        check = check_stack(target, args.model, requests=args.requests, max_tokens=4)
    except PrometheusUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.stop(timeout_s=30)
    rows = [{"query": q.name[:40], "series": q.series, "value": q.value if q.ok else "NO DATA"}
            for q in check.queries]
    rows += [{"query": f"alert {k}", "series": "", "value": v} for k, v in check.alerts.items()]
    print_table(rows, title=f"Prometheus against {target} after {check.load['completed']} requests")
    missing, quiet, errors = check.no_data(), check.quiet_alerts(), check.rule_errors()
    emit_json({"target": target, "queries": len(check.queries), "no_data": missing, "alerts_not_active": quiet,
               "rule_errors": errors, "requests": check.load["completed"],
               "ttft_p50_ms": check.load["ttft_ms"]["p50"], "hardware": stamp_dict(dtype="fp32")})
    return 1 if missing or quiet or errors else 0


if __name__ == "__main__":
    sys.exit(main())
