"""Exercise 8.2 (book 8.4.2): build the monitoring stack - recording rules, alerts and panel queries.

Metric names are vLLM's (our server exports the same): ``vllm:time_to_first_token_seconds`` (histogram),
``vllm:generation_tokens_total``, ``vllm:request_success_total``, ``vllm:kv_cache_usage_perc``,
``vllm:num_requests_waiting``, ``http_requests_total{handler, status}``, and Prometheus's own ``up``.

1. ``build_rules(slo_ttft_p99_s)`` returns a Prometheus rule file as a dict (``{"groups": [...]}``) with
   * recording rules ``job:llm_ttft_seconds:p99_1m`` (TTFT p99 over 1 m, per job) and
     ``job:llm_generation_tokens:rate1m`` (output tokens/s, per job);
   * alert ``TTFTAboveSLO``: ``job:llm_ttft_seconds:p99_1m > slo_ttft_p99_s`` for 1 m, label
     ``severity: page``;
   * alert ``TargetDown``: a target's ``up`` is 0 for 1 m, label ``severity: page``.
   Write every alert as ``<signal> > <number>`` (TargetDown: ``up == 0``): the grader lowers thresholds.
2. ``panel_queries()`` returns PromQL for the panels ``qps`` (finished requests/s), ``ttft_p99`` (s),
   ``tokens_per_s``, ``kv_cache_usage`` (the fullest replica's, 0-1) and ``waiting``; each one series for
   the whole fleet (rates and counts summed over replicas); Grafana's ``$__rate_interval`` and ``$job`` may
   be used.

Graded with the real Prometheus: ``promtool check rules``, ``promtool test rules`` with synthetic series
(the SLO alert fires on slow first tokens and stays quiet on fast ones; every query and record gives
the right number for two replicas, TargetDown fires for the one that is down), and a Prometheus scraping our
server under load, where every query and rule must return data and every alert go pending.
"""

from __future__ import annotations

TTFT = "vllm:time_to_first_token_seconds_bucket"


def build_rules(slo_ttft_p99_s: float = 2.0) -> dict:
    return {"groups": [
        {"name": "exercise-8.2-recording", "rules": [
            {"record": "job:llm_ttft_seconds:p99_1m",
             "expr": f"histogram_quantile(0.99, sum by (job, le) (rate({TTFT}[1m])))"},
            {"record": "job:llm_generation_tokens:rate1m",
             "expr": "sum by (job) (rate(vllm:generation_tokens_total[1m]))"},
        ]},
        {"name": "exercise-8.2-alerts", "rules": [
            {"alert": "TTFTAboveSLO", "expr": f"job:llm_ttft_seconds:p99_1m > {slo_ttft_p99_s}", "for": "1m",
             "labels": {"severity": "page"},
             "annotations": {"summary": "TTFT p99 above the SLO"}},
            {"alert": "TargetDown", "expr": "up == 0", "for": "1m", "labels": {"severity": "page"},
             "annotations": {"summary": "a target is not answering /metrics"}},
        ]},
    ]}


def panel_queries() -> dict[str, str]:
    ri = "$__rate_interval"
    return {
        "qps": f"sum(rate(vllm:request_success_total[{ri}]))",
        "ttft_p99": f"histogram_quantile(0.99, sum by (le) (rate({TTFT}[{ri}])))",
        "tokens_per_s": f"sum(rate(vllm:generation_tokens_total[{ri}]))",
        "kv_cache_usage": "max(vllm:kv_cache_usage_perc)",
        "waiting": "sum(vllm:num_requests_waiting)",
    }
