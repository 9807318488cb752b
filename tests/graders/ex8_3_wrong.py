"""Exercise 8.3, plausible but wrong: without the price gauge the cost falls back to one replica's price
(``vector(price)``), not price x live replicas - right for one replica, half the cost for two."""

from ch08_production.solutions.ex8_3_roi_dashboard import cost_per_million  # noqa: F401 - right part


def roi_queries(price_per_hour, window="1m"):
    cost = f"(sum(llmic:cost_per_hour_dollars) or vector({price_per_hour}))"
    tps = f"sum(rate(vllm:generation_tokens_total[{window}]))"
    return {"cost_per_hour": cost, "tokens_per_dollar": f"{tps} * 3600 / {cost}",
            "cost_per_million_tokens": f"{cost} / ({tps} * 3600) * 1e6"}


def roi_dashboard(price_per_hour):
    ds = {"type": "prometheus", "uid": "prometheus"}
    return {"uid": "llm-roi", "panels": [{"type": "stat", "title": k, "datasource": ds, "targets": [{"expr": e}]}
                                         for k, e in roi_queries(price_per_hour, "$__rate_interval").items()]}
