"""Exercise 8.3, a different correct answer: live replicas as ``sum(up)``, the price fallback with
``scalar``, $ per 1M tokens as 1e6 / tokens per dollar, panels built from a list."""


def cost_per_million(price_per_hour, tokens_per_s):
    tokens_per_dollar = tokens_per_s * 3600.0 / price_per_hour
    return 1e6 / tokens_per_dollar


def roi_queries(price_per_hour, window="1m"):
    cost = f"(sum(llmic:cost_per_hour_dollars) or sum(up) * scalar(vector({price_per_hour})))"
    per_dollar = f"(sum(rate(vllm:generation_tokens_total[{window}])) * 3600 / {cost})"
    return {"cost_per_hour": cost, "tokens_per_dollar": per_dollar,
            "cost_per_million_tokens": f"1e6 / {per_dollar}"}


def roi_dashboard(price_per_hour):
    queries = roi_queries(price_per_hour, "$__rate_interval")
    panels = []
    for n, key in enumerate(["cost_per_hour", "tokens_per_dollar", "cost_per_million_tokens"]):
        panels.append({"id": n + 1, "type": "stat", "title": key,
                       "datasource": {"type": "prometheus", "uid": "prometheus"},
                       "targets": [{"refId": "A", "expr": queries[key]}]})
    return {"uid": "llm-roi", "title": "ROI", "panels": panels}
