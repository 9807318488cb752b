"""Prometheus metrics named as vLLM names them, plus HTTP and cost counters (book 8.4.1, 8.7.1).

One dashboard serves both our server and a vLLM server because the names, types, label names
(``model_name``, ``engine``) and histogram buckets below are vLLM's (``vllm/v1/metrics/loggers.py``,
vLLM 0.32). Counters are exposed with the ``_total`` suffix, as prometheus-client and vLLM do.
The prefix cache is counted in tokens, as vLLM counts it: ``vllm:prefix_cache_hits_total /
vllm:prefix_cache_queries_total`` is the hit rate (both stay 0 when the engine runs without
``--enable-prefix-caching``). vLLM 0.32 exports no structured-output metric, so that counter is ours,
``llmic:structured_output_requests_total{kind=json_schema|json_object|regex|choice|grammar}`` (tool
calls are ``json_schema``: their arguments are generated under the function's schema).
These names are a contract with the Grafana dashboards and alerts of this chapter; keep them stable.

Cost (8.7): the instance costs ``$/hour`` whether busy or idle. ``llmic:cost_dollars_total`` is that
bill; each request is charged its share of the time it was in flight, shared equally with the
requests in flight at the same moment (:class:`CostMeter`), so the request costs add up to the bill
of the busy time: ``llmic:request_cost_dollars`` is a histogram whose ``_sum`` is the busy cost, and
``llmic:cost_dollars_total - llmic:request_cost_dollars_sum`` is the idle cost.

Every :class:`ServerMetrics` has its own registry: no module-level state, several servers per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ch04_kvcache.structured_output import KINDS as STRUCTURED_KINDS
from ch08_production.backends.base import BackendStats

# vLLM's buckets (vllm/v1/metrics/buckets.py)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
               480.0, 960.0, 1920.0, 7680.0)
N_BUCKETS = (1, 2, 5, 10, 20)   # vllm:request_params_n
COST_BUCKETS = (1e-7, 1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 0.1)

LABELS = ("model_name", "engine")
REJECT_REASONS = ("auth", "rate_limit", "overloaded", "invalid", "content_filter", "too_large")

# The stable list (README 8.4 repeats it for the dashboard authors).
METRIC_NAMES = (
    "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
    "vllm:num_preemptions_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total",
    "vllm:request_success_total", "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
    "vllm:request_params_n", "vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds",
    "vllm:e2e_request_latency_seconds", "http_requests_total", "llmic:cost_per_hour_dollars",
    "llmic:cost_dollars_total", "llmic:request_cost_dollars",
    "llmic:rejected_requests_total", "llmic:backend_healthy", "llmic:fallback_requests_total",
    "llmic:structured_output_requests_total",
)


class CostMeter:
    """Exact fair-share cost: a virtual clock that advances at ``$/s / requests in flight``.

    A request's cost is the clock's advance between its start and its end, i.e. the integral of
    ``rate / n(t)`` over its lifetime. O(1) per event.
    """

    def __init__(self, dollars_per_hour: float, clock: Callable[[], float] = time.monotonic) -> None:
        if dollars_per_hour < 0:
            raise ValueError("cost per hour must be >= 0")
        self.rate = dollars_per_hour / 3600.0
        self.clock = clock
        self._virtual = 0.0
        self._inflight = 0
        self._last = clock()
        self._lock = threading.Lock()

    def _advance(self) -> None:
        now = self.clock()
        if self._inflight:
            self._virtual += (now - self._last) * self.rate / self._inflight
        self._last = now

    def start(self) -> float:
        with self._lock:
            self._advance()
            self._inflight += 1
            return self._virtual

    def finish(self, token: float) -> float:
        """The request's cost in dollars, given what :meth:`start` returned."""
        with self._lock:
            self._advance()
            self._inflight = max(0, self._inflight - 1)
            return self._virtual - token


class ServerMetrics:
    def __init__(self, model_name: str, dollars_per_hour: float = 0.0, engine: str = "0") -> None:
        self.registry = CollectorRegistry()
        self.labels = (model_name, engine)
        r, L = self.registry, LABELS
        self.running = Gauge("vllm:num_requests_running", "Number of requests in model execution batches.", L,
                             registry=r).labels(*self.labels)
        self.waiting = Gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", L,
                             registry=r).labels(*self.labels)
        self.kv_usage = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", L,
                              registry=r).labels(*self.labels)
        self.preemptions = Counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.",
                                   L, registry=r).labels(*self.labels)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", L,
                                     registry=r).labels(*self.labels)
        self.generation_tokens = Counter("vllm:generation_tokens", "Number of generation tokens processed.", L,
                                         registry=r).labels(*self.labels)
        self.prefix_queries = Counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of "
                                      "queried tokens.", L, registry=r).labels(*self.labels)
        self.prefix_hits = Counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached "
                                   "tokens.", L, registry=r).labels(*self.labels)
        self.params_n = Histogram("vllm:request_params_n", "Histogram of the n request parameter.", L,
                                  buckets=N_BUCKETS, registry=r).labels(*self.labels)
        self.success = Counter("vllm:request_success", "Count of successfully processed requests.",
                               L + ("finished_reason",), registry=r)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                              L, buckets=TTFT_BUCKETS, registry=r).labels(*self.labels)
        self.itl = Histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                             L, buckets=ITL_BUCKETS, registry=r).labels(*self.labels)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                             L, buckets=E2E_BUCKETS, registry=r).labels(*self.labels)
        self.http = Counter("http_requests_total", "HTTP requests by handler, method and status code.",
                            ("handler", "method", "status"), registry=r)
        self.cost_rate = Gauge("llmic:cost_per_hour_dollars", "Configured price of this instance, $/hour.",
                               registry=r)
        self.cost_total = Counter("llmic:cost_dollars", "Instance cost since start: uptime x $/hour.",
                                  registry=r)
        self.request_cost = Histogram("llmic:request_cost_dollars", "Per-request cost: fair share of the "
                                      "instance's $/hour over the time the request was in flight.", L,
                                      buckets=COST_BUCKETS, registry=r).labels(*self.labels)
        self.rejected = Counter("llmic:rejected_requests", "Requests refused before generation, by reason.",
                                ("reason",), registry=r)
        self.healthy = Gauge("llmic:backend_healthy", "1 when the serving backend is healthy.", ("backend",),
                             registry=r)
        self.fallback = Counter("llmic:fallback_requests", "Requests served by the fallback backend.",
                                ("reason",), registry=r)
        self.structured = Counter("llmic:structured_output_requests", "Requests admitted under a structured-output "
                                  "constraint (a grammar masks their logits), by kind.", ("kind",), registry=r)
        for kind in STRUCTURED_KINDS:      # ch04's constraint kinds
            self.structured.labels(kind)
        for reason in REJECT_REASONS:  # series exist from the first scrape, so rate() and alerts work at once
            self.rejected.labels(reason)
        for reason in ("unhealthy", "saturated"):
            self.fallback.labels(reason)
        self.cost_rate.set(dollars_per_hour)
        self.cost = CostMeter(dollars_per_hour)
        self._started = time.monotonic()
        self._billed_until = self._started
        self._last: dict[str, int] = {}   # the backend's cumulative counters as last seen
        self._lock = threading.Lock()

    def update_from_backend(self, stats: BackendStats, backend_name: str) -> None:
        self.running.set(stats.num_running)
        self.waiting.set(stats.num_waiting)
        self.kv_usage.set(stats.kv_cache_usage)
        self.healthy.labels(backend_name).set(1 if stats.healthy else 0)
        with self._lock:
            for name, counter in (("num_preemptions", self.preemptions), ("prefix_cache_queries", self.prefix_queries),
                                  ("prefix_cache_hits", self.prefix_hits)):
                value, seen = getattr(stats, name), self._last.get(name, 0)
                if value > seen:          # a Prometheus counter only goes up: add what is new since the last scrape
                    counter.inc(value - seen)
                self._last[name] = max(seen, value)

    def bill_uptime(self) -> None:
        with self._lock:
            now = time.monotonic()
            self.cost_total.inc((now - self._billed_until) * self.cost.rate)
            self._billed_until = now

    def observe_finished(self, *, prompt_tokens: int, completion_tokens: int, ttft_s: float | None,
                         itls: list[float], e2e_s: float, finish: str, cost_dollars: float, n: int = 1) -> None:
        self.prompt_tokens.inc(prompt_tokens)
        self.params_n.observe(n)
        self.generation_tokens.inc(completion_tokens)
        if ttft_s is not None:
            self.ttft.observe(ttft_s)
        for gap in itls:
            self.itl.observe(gap)
        self.e2e.observe(e2e_s)
        self.success.labels(*self.labels, finish).inc()
        self.request_cost.observe(cost_dollars)

    def render(self) -> bytes:
        self.bill_uptime()
        return generate_latest(self.registry)
