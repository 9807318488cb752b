"""Cost per 1M tokens, the ROI of each optimisation, and break-even points (book 8.7, 8.6.1, 8.6.4).

Inputs are either measured (``--measure URL`` replays a short streaming benchmark against a running
server with ch03's client; ``--smoke`` measures our own server in-process) or given (``--tokens-per-s``),
and every row says which. Prices are given (``--price-per-hour``) or looked up in ch02's GPU table
(``--gpu H100``: that table's listed on-demand price, with its date and source).

* cost per 1M output tokens = $/hour / (tokens/s x 3600 x utilisation) x 1e6;
* an optimisation that multiplies throughput by r divides that cost by r (same hardware): its monthly
  saving at ``--monthly-tokens`` is cost x (1 - 1/r), and with ``--engineering-cost`` its break-even is
  engineering cost / monthly saving (months). Ratios come from ``--ratio name=r`` (e.g. measured by
  ``python -m ch05_scheduling...``) or from appendix C's ``results.json`` (``--results``: every numeric
  field named ``*_vs_*`` or ``*speedup*``);
* against a hosted API at ``--api-price-per-1m`` $/1M tokens, self-hosting wins above a utilisation of
  $/hour x 1e6 / (tokens/s x 3600 x API price).

    python -m ch08_production.roi --tokens-per-s 2400 --gpu H100 --ratio quant_int4=1.8
    python -m ch08_production.roi --smoke
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from common.bench import stamp_dict
from common.cli import UsageError, friendly_errors, make_parser
from common.report import emit_json, print_table

HOURS_PER_MONTH = 730.0


@dataclass(frozen=True)
class Deployment:
    """One replica's economics: price, sustained output throughput, and how busy it is."""

    price_per_hour: float
    tokens_per_s: float
    utilisation: float = 1.0  # share of the hour it serves at that throughput

    def __post_init__(self) -> None:
        if self.price_per_hour < 0 or not self.tokens_per_s > 0 or not 0 < self.utilisation <= 1:
            raise UsageError("price must be >= 0, tokens/s > 0 and utilisation within (0, 1]")

    @property
    def cost_per_million(self) -> float:
        return self.price_per_hour / (self.tokens_per_s * 3600.0 * self.utilisation) * 1e6

    @property
    def tokens_per_dollar(self) -> float:
        return math.inf if self.price_per_hour == 0 else 1e6 / self.cost_per_million


@dataclass(frozen=True)
class OptimisationROI:
    name: str
    throughput_ratio: float
    cost_per_million: float
    monthly_saving: float
    break_even_months: float | None  # None without an engineering cost


def optimisation_roi(base: Deployment, name: str, ratio: float, monthly_tokens: float,
                     engineering_cost: float = 0.0) -> OptimisationROI:
    """Same hardware, ``ratio`` x the throughput: what it saves per month and when it pays back."""
    if not ratio > 0:
        raise UsageError(f"throughput ratio for {name} must be > 0, got {ratio}")
    new_cost = base.cost_per_million / ratio
    saving = (base.cost_per_million - new_cost) * monthly_tokens / 1e6
    months = engineering_cost / saving if engineering_cost > 0 and saving > 0 else None
    return OptimisationROI(name, ratio, new_cost, saving, months)


def break_even_utilisation(base: Deployment, api_price_per_million: float) -> float:
    """Utilisation above which self-hosting is cheaper per token than the API (> 1: never)."""
    if not api_price_per_million > 0:
        raise UsageError("--api-price-per-1m must be > 0")
    return base.price_per_hour * 1e6 / (base.tokens_per_s * 3600.0 * api_price_per_million)


def replicas_for(tokens_per_month: float, base: Deployment) -> int:
    """Replicas needed to serve a monthly token volume at the deployment's utilisation."""
    per_replica = base.tokens_per_s * 3600.0 * HOURS_PER_MONTH * base.utilisation
    return max(1, math.ceil(tokens_per_month / per_replica))


def ratios_from_results(path: Path) -> dict[str, float]:
    """Throughput ratios from appendix C's results.json: numeric ``*_vs_*`` / ``*speedup*`` fields."""
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    out = {}
    for bench, entry in results.items():
        data = entry.get("data", {}) if isinstance(entry, dict) else {}
        for key, value in data.items():
            if ("_vs_" in key or "speedup" in key) and isinstance(value, (int, float)) and value > 0:
                out[f"{bench}.{key}"] = float(value)
    return out


def _parse_ratio(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise UsageError(f"--ratio wants name=number, got {text!r}") from None


def measure_tokens_per_s(url: str, model: str, requests: int = 8, max_tokens: int = 16) -> float:
    """Sustained output tokens/s of a running server (ch03's streaming benchmark client, concurrency 4)."""
    from ch03_env.bench import BenchConfig, run_benchmark
    from common.datasets import WorkloadRequest

    reqs = [WorkloadRequest(f"roi-{i}", f"Write a sentence about the number {i}.", 12, max_tokens)
            for i in range(requests)]
    report = run_benchmark(BenchConfig(base_url=url, model=model, num_requests=requests, concurrency=4), reqs)
    if report.summary["completed"] == 0:
        raise UsageError(f"no request to {url} succeeded: {report.summary['errors']}")
    return float(report.summary["output_throughput"])


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch08_production.roi", __doc__)
    parser.add_argument("--price-per-hour", type=float, help="$/hour of one replica")
    parser.add_argument("--gpu", help="take the $/hour from ch02's GPU table (e.g. H100, A100, L4)")
    parser.add_argument("--tokens-per-s", type=float, help="sustained output tokens/s of one replica (given)")
    parser.add_argument("--measure", metavar="URL", help="measure tokens/s against a running server")
    parser.add_argument("--model", default="smollm2-135m", help="model name for --measure")
    parser.add_argument("--utilisation", type=float, default=0.6, help="busy share of the hour")
    parser.add_argument("--monthly-tokens", type=float, default=1e9, help="output tokens served per month")
    parser.add_argument("--ratio", action="append", default=[], help="optimisation=throughput ratio (repeat)")
    parser.add_argument("--results", type=Path, help="appendix C results.json: use its measured ratios")
    parser.add_argument("--engineering-cost", type=float, default=0.0, help="one-off $ to build each optimisation")
    parser.add_argument("--api-price-per-1m", type=float, help="a hosted API's $ per 1M output tokens (given)")
    parser.add_argument("--smoke", action="store_true", help="measure our server on the embedded model, $1/hour")
    parser.add_argument("--json", action="store_true", help="print only the final JSON line")
    args = parser.parse_args(argv)
    with friendly_errors():
        price_note = "given"
        if args.gpu:
            from ch02_gpu.gpus import UnknownGPU, find_gpu

            try:
                g = find_gpu(args.gpu)
            except UnknownGPU as exc:
                raise UsageError(str(exc)) from None
            args.price_per_hour = g.price_usd_per_hour
            price_note = f"ch02 table: {g.name}, {g.price_date}, {g.price_source}"
        if args.smoke and args.price_per_hour is None:
            args.price_per_hour = 1.0
        if args.price_per_hour is None:
            raise UsageError("give --price-per-hour or --gpu")
        tps_note = "given"
        if args.measure or (args.smoke and args.tokens_per_s is None):
            tps_note = "measured in this run"
            if args.measure:
                args.tokens_per_s = measure_tokens_per_s(args.measure, args.model)
            else:
                from ch08_production.promstack import _run_smoke_server

                srv = _run_smoke_server()
                try:
                    args.tokens_per_s = measure_tokens_per_s(srv.url, "smollm2-135m", requests=2, max_tokens=8)
                finally:
                    srv.stop(timeout_s=30)
        if args.tokens_per_s is None:
            raise UsageError("give --tokens-per-s, --measure URL or --smoke")
        base = Deployment(args.price_per_hour, args.tokens_per_s, args.utilisation)
        ratios = dict(_parse_ratio(r) for r in args.ratio)
        if args.results:
            ratios.update(ratios_from_results(args.results))
        rois = [optimisation_roi(base, n, r, args.monthly_tokens, args.engineering_cost) for n, r in ratios.items()]
        be = break_even_utilisation(base, args.api_price_per_1m) if args.api_price_per_1m else None
    rows = [{"optimisation": "baseline", "throughput x": 1.0, "$/1M tokens": base.cost_per_million,
             "saving $/month": 0.0, "break-even months": None}]
    rows += [{"optimisation": r.name, "throughput x": r.throughput_ratio, "$/1M tokens": r.cost_per_million,
              "saving $/month": r.monthly_saving, "break-even months": r.break_even_months} for r in rois]
    if not args.json:
        print(f"price ${base.price_per_hour:.2f}/hour ({price_note}); {base.tokens_per_s:.3g} output tokens/s "
              f"({tps_note}); utilisation {base.utilisation:.0%}; {args.monthly_tokens:.3g} tokens/month -> "
              f"{replicas_for(args.monthly_tokens, base)} replica(s)")
        print_table(rows, title="cost per 1M output tokens and optimisation ROI")
        if be is not None:
            verdict = "never" if be > 1 else f"above {be:.0%} utilisation"
            print(f"self-hosting beats the API at ${args.api_price_per_1m}/1M tokens (given): {verdict}")
    emit_json({"benchmark": "roi", "price_per_hour": base.price_per_hour, "price_source": price_note,
               "tokens_per_s": base.tokens_per_s, "tokens_per_s_source": tps_note, "utilisation": base.utilisation,
               "cost_per_million": base.cost_per_million, "tokens_per_dollar": base.tokens_per_dollar,
               "optimisations": [r.__dict__ for r in rois], "break_even_utilisation": be,
               "replicas": replicas_for(args.monthly_tokens, base), "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
