"""Chapter 1's practical checklist (实战检查清单): do you know what a token costs you, and is it on target?

    python -m ch01_economics.checklist                                   # our engine's measured tok/s, $0.10/h
    python -m ch01_economics.checklist --tok-s 40 --price-per-hour 2.0 --utilization 0.25 --target-per-1m 5

Items: where the throughput comes from (a measurement: your ``--tok-s`` or the report's, else nothing to
price), whether the hourly price is yours or an assumption, how much of the paid capacity is used (an idle
machine costs the same: the effective price per token divides by the utilisation), and the resulting cost
per 1M tokens against your target. Exit code 1 on a FAIL.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ch01_economics.measured import figure, load_report
from ch01_economics.structure import cost_per_million_tokens, default_price
from common.checklist import FAIL, OK, WARN, Check, add_checklist_args, report
from common.cli import friendly_errors, make_parser

ENGINE_KEY = "ch05_scheduling.engine_tok_s"


def check_throughput(tok_s: float | None, source: str) -> Check:
    if tok_s is None:
        return Check("throughput", FAIL, f"no measured tokens/s ({source})", "measure it: python -m "
                     "ch05_scheduling.bench (or make bench), or pass --tok-s from your own load test.")
    return Check("throughput", OK, f"{tok_s:.3g} tok/s from {source}")


def check_price(source: str) -> Check:
    if source.startswith("given"):
        return Check("price", OK, f"hourly price {source}")
    return Check("price", WARN, f"hourly price assumed ({source})", "pass --price-per-hour with what your "
                 "machine really costs (on-demand, reserved or spot).")


def check_utilization(utilization: float) -> Check:
    detail = f"{utilization:.0%} of the paid capacity serves requests"
    if utilization < 0.3:
        return Check("utilization", WARN, detail + f": every served token carries {1 / utilization:.1f}x its "
                     "compute cost", "scale to the load (ch08 autoscale), batch more per machine (ch05), or share "
                     "the machine across models.")
    return Check("utilization", OK, detail)


def check_cost(per_1m: float | None, target: float | None) -> Check:
    if per_1m is None:
        return Check("cost", FAIL, "cannot price a token without a measured throughput", "see 'throughput'.")
    detail = f"${per_1m:.3g} per 1M tokens at that throughput, price and utilisation"
    if target is not None and per_1m > target:
        return Check("cost", FAIL, detail + f", above your target ${target:g}", "the chapters' multipliers "
                     "apply: continuous batching (ch05), quantization (ch06), speculation (ch07); python -m "
                     "ch01_economics.cost shows what each measured here.")
    return Check("cost", OK, detail)


def run_checks(args) -> list[Check]:
    rep = load_report(Path(args.results) if args.results else None)
    if args.tok_s is not None:
        tok_s, source = args.tok_s, "--tok-s"
    else:
        f = figure(rep, ENGINE_KEY)
        tok_s, source = f.value, f"the report's {ENGINE_KEY}" + ("" if f.value is not None else ": not measured")
    price = default_price(rep, args.price_per_hour)
    per_1m = (cost_per_million_tokens(tok_s * args.utilization, price.dollars_per_hour)
              if tok_s else None)
    return [check_throughput(tok_s, source), check_price(price.source), check_utilization(args.utilization),
            check_cost(per_1m, args.target_per_1m)]


def fraction(text: str) -> float:
    import argparse

    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"utilization must be in (0, 1], got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch01_economics.checklist", __doc__)
    parser.add_argument("--results", default=None, help="an appendix C results.json (default: the reference)")
    parser.add_argument("--tok-s", type=float, default=None, help="your measured tokens/s")
    parser.add_argument("--price-per-hour", type=float, default=None, help="what the machine costs per hour")
    parser.add_argument("--utilization", type=fraction, default=1.0, help="share of paid time serving requests")
    parser.add_argument("--target-per-1m", type=float, default=None, help="the cost per 1M tokens you need")
    add_checklist_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        return report("chapter 1 checklist: throughput, price, utilisation, cost per 1M tokens", run_checks(args),
                      json_only=args.json)


if __name__ == "__main__":
    sys.exit(main())
