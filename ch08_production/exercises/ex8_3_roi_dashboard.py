"""Exercise 8.3 (book 8.7): build the ROI dashboard - cost per hour, tokens per dollar, $ per 1M tokens.

Our server exports ``llmic:cost_per_hour_dollars`` (a gauge: the configured price of the replica) and
``vllm:generation_tokens_total`` (a counter). A plain vLLM server exports no price: there, use the
``price_per_hour`` argument times the number of replicas answering scrapes (``up == 1``).

1. ``cost_per_million(price_per_hour, tokens_per_s)``: dollars per 1M output tokens at full utilisation.
2. ``roi_queries(price_per_hour, window)`` returns PromQL (no Grafana variables) for
   * ``cost_per_hour``: sum of ``llmic:cost_per_hour_dollars``, else ``price_per_hour`` x live replicas;
   * ``tokens_per_dollar``: output tokens/s over ``window`` x 3600 / cost per hour;
   * ``cost_per_million_tokens``: cost per hour / (output tokens per hour) x 1e6.
3. ``roi_dashboard(price_per_hour)`` returns a Grafana dashboard JSON model (``uid`` ``llm-roi``) with one
   ``stat`` panel per query (``title`` = the query's key, ``targets[0].expr`` = the query with
   ``window="$__rate_interval"``, datasource uid ``prometheus``).

Graded with ``promtool test rules``: your queries become recording rules evaluated on synthetic series
(100 tokens/s at $3.60/hour must give 100,000 tokens per dollar and $10 per 1M tokens), with and without
the price gauge; and against ``ch08_production.roi``.
"""

from __future__ import annotations


def cost_per_million(price_per_hour: float, tokens_per_s: float) -> float:
    raise NotImplementedError("Exercise 8.3: dollars per 1M output tokens")


def roi_queries(price_per_hour: float, window: str = "1m") -> dict[str, str]:
    raise NotImplementedError("Exercise 8.3: the three PromQL queries (see the module docstring)")


def roi_dashboard(price_per_hour: float) -> dict:
    raise NotImplementedError("Exercise 8.3: the Grafana dashboard JSON model")
