"""Exercise 8.2, plausible but wrong: the rules are right, but the qps panel shows finished requests per
*minute* (``increase`` over 1 m) and the TTFT panel takes a p99 per replica (no ``sum by (le)``), which is
not the fleet's p99. Every query still returns data, so only the values give it away."""

from ch08_production.solutions.ex8_2_monitoring import build_rules  # noqa: F401 - the rules part is right


def panel_queries():
    return {
        "qps": "sum(increase(vllm:request_success_total[1m]))",
        "ttft_p99": "histogram_quantile(0.99, rate(vllm:time_to_first_token_seconds_bucket[$__rate_interval]))",
        "tokens_per_s": "sum(rate(vllm:generation_tokens_total[$__rate_interval]))",
        "kv_cache_usage": "max(vllm:kv_cache_usage_perc)",
        "waiting": "sum(vllm:num_requests_waiting)",
    }
