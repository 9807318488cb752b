"""1.2.1-1.2.3: what a token costs, from measured tokens/s and a stated hourly price.

The cost structure of serving is one line of arithmetic: a machine rented at ``P`` dollars per hour that
produces ``r`` tokens per second costs ``P / (3600 r)`` dollars per token, so 1M tokens cost
``1e6 P / (3600 r)``. Everything else in this module is where ``r`` comes from (a key in the report) and
where ``P`` comes from (a labelled assumption, or ``--price-per-hour``).

* 1.2.1 inference is a running cost: the bill grows with the tokens served (the monthly column);
* 1.2.2 three barriers that keep that bill high, each measured here (memory-bound decode, KV memory
  reserved and not used, capacity paid for and idle);
* 1.2.3 cheaper tokens mean more tokens for the same budget (the "tokens per dollar" column).
"""

from __future__ import annotations

from dataclasses import dataclass

from ch01_economics.measured import Figure, Report, figure
from ch01_economics.sources import BY_ID

SECONDS_PER_HOUR = 3600.0


def cost_per_million_tokens(tokens_per_s: float, dollars_per_hour: float) -> float:
    """Dollars for 1M tokens from a machine that makes ``tokens_per_s`` and costs ``dollars_per_hour``."""
    if tokens_per_s <= 0:
        raise ValueError("tokens_per_s must be positive")
    if dollars_per_hour < 0:
        raise ValueError("dollars_per_hour must not be negative")
    return dollars_per_hour / (tokens_per_s * SECONDS_PER_HOUR) * 1e6


@dataclass(frozen=True)
class Price:
    dollars_per_hour: float
    source: str  # a SOURCES id, or "given"


def default_price(report: Report, given: float | None = None) -> Price:
    """The hourly price of the machine that measured the report (a CPU's tok/s at a GPU's price is nobody's cost)."""
    if given is not None:
        return Price(given, "given (--price-per-hour)")
    if report.hardware.get("gpu"):
        return Price(2.0, BY_ID["price_gpu"].id)
    return Price(0.10, BY_ID["price_cpu_vm"].id)


# (what runs, the report key of its tokens/s). Rows from the same benchmark share one workload; compare
# rows across benchmarks only as orders of magnitude.
THROUGHPUT_KEYS: tuple[tuple[str, str], ...] = (
    ("transformers generate, static batches", "ch05_scheduling.hf_static_tok_s"),
    ("our engine, static batching", "ch05_scheduling.engine_static_tok_s"),
    ("our engine, continuous batching", "ch05_scheduling.engine_tok_s"),
    ("vLLM-CPU offline", "ch05_scheduling.vllm_tok_s"),
    ("our server over HTTP", "ch08_production.server_tok_s"),
    ("vLLM server over HTTP", "ch08_production.vllm_server_tok_s"),
    ("batch-1 decode, eager (one user)", "ch09_advanced.eager_tok_s"),
    ("batch-1 decode, fused C++ step", "ch09_advanced.fused_decode_tok_s"),
)
BASELINE_KEY = "ch05_scheduling.hf_static_tok_s"


@dataclass(frozen=True)
class CostRow:
    what: str
    key: str
    tokens_per_s: Figure
    cost_per_1m: float | None
    monthly_cost: float | None
    vs_baseline: float | None  # baseline's cost / this cost (>1 = cheaper)

    def as_row(self) -> dict[str, object]:
        def money(v: float | None) -> str:
            return f"${v:,.3f}" if v is not None else "not measured"

        return {"what runs": self.what, "tokens/s": self.tokens_per_s.show(".4g"),
                "$ per 1M tokens": money(self.cost_per_1m), "$ per month": money(self.monthly_cost),
                "x cheaper than transformers": f"{self.vs_baseline:.2f}" if self.vs_baseline else "-",
                "key": self.key}


def cost_rows(report: Report, price: Price, monthly_tokens: float) -> list[CostRow]:
    base = figure(report, BASELINE_KEY)
    rows = []
    for what, key in THROUGHPUT_KEYS:
        f = figure(report, key)
        if not f.measured or f.value <= 0:
            rows.append(CostRow(what, key, f if f.note else Figure(key, None, "not measured: zero"), None, None, None))
            continue
        c = cost_per_million_tokens(f.value, price.dollars_per_hour)
        ratio = f.value / base.value if base.measured and base.value else None
        rows.append(CostRow(what, key, f, c, c * monthly_tokens / 1e6, ratio))
    return rows


@dataclass(frozen=True)
class Barrier:
    name: str
    keys: tuple[str, ...]
    value: float | None  # the measured figure (a share or a ratio)
    meaning: str


def _ratio(a: Figure, b: Figure) -> float | None:
    return a.value / b.value if a.measured and b.measured and b.value else None


def barriers(report: Report) -> list[Barrier]:
    """1.2.2: what keeps the cost of a token high, each as a figure measured on the report's machine."""
    mbu = figure(report, "ch02_roofline.mbu_batch1")
    b1 = figure(report, "ch02_roofline.points[batch=1].tokens_per_s")
    b64 = figure(report, "ch02_roofline.points[batch=64].tokens_per_s")
    naive = figure(report, "ch04_kvcache.naive_kv_utilization")
    idle = figure(report, "ch08_autoscale.peak_provisioned_idle_share")
    batch_gain = _ratio(b64, b1)
    return [
        Barrier("decode is memory-bound", (mbu.key, b64.key, b1.key), mbu.value,
                f"batch-1 decode reaches {mbu.show('.0%')} of the memory-bandwidth bound (the weights are read "
                "once per token whatever the compute); "
                + (f"64 sequences per pass make {batch_gain:.1f}x the tokens/s of one" if batch_gain
                   else "batching gain not measured")),
        Barrier("KV memory reserved, not used", (naive.key,), naive.value,
                (f"reserving max length per request uses {naive.value:.0%} of the KV memory it holds; "
                 "the rest is capacity paid for") if naive.measured else "not measured"),
        Barrier("capacity sized for the peak", (idle.key,), idle.value,
                (f"{idle.value:.0%} of peak-sized replica-hours sit idle over the day's load curve")
                if idle.measured else "not measured"),
    ]
