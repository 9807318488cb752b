"""Exercise 8.2, a different correct answer: aggregations written ``without (instance)`` / ``by (job)``,
TargetDown as ``up < 1``, the p99 record built from a per-job bucket-rate record, panels filtered by job."""

BUCKETS = "vllm:time_to_first_token_seconds_bucket"


def build_rules(slo_ttft_p99_s=2.0):
    page = {"severity": "page"}
    return {"groups": [
        {"name": "llm-records", "rules": [
            {"record": "job_le:llm_ttft_bucket:rate1m", "expr": f"sum without (instance) (rate({BUCKETS}[1m]))"},
            {"record": "job:llm_ttft_seconds:p99_1m",
             "expr": "histogram_quantile(0.99, job_le:llm_ttft_bucket:rate1m)"},
            {"record": "job:llm_generation_tokens:rate1m",
             "expr": "sum without (instance) (rate(vllm:generation_tokens_total[1m]))"},
        ]},
        {"name": "llm-alerts", "rules": [
            {"alert": "TTFTAboveSLO", "expr": f"job:llm_ttft_seconds:p99_1m > {slo_ttft_p99_s}", "for": "1m",
             "labels": page},
            {"alert": "TargetDown", "expr": "up < 1", "for": "1m", "labels": page},
        ]},
    ]}


def panel_queries():
    sel = '{job=~"$job"}'
    return {
        "qps": f"sum by (job) (rate(vllm:request_success_total{sel}[$__rate_interval]))",
        "ttft_p99": f"histogram_quantile(0.99, sum by (job, le) (rate({BUCKETS}{sel}[$__rate_interval])))",
        "tokens_per_s": f"sum by (job) (rate(vllm:generation_tokens_total{sel}[$__rate_interval]))",
        "kv_cache_usage": f"max by (job) (vllm:kv_cache_usage_perc{sel})",
        "waiting": f"sum by (job) (vllm:num_requests_waiting{sel})",
    }
