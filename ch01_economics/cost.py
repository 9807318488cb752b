"""Chapter 1's economics from this repository's measured ratios: cost per 1M tokens, how optimisations
multiply, the five common mistakes, and every quoted figure with its source.

    python -m ch01_economics.cost                                   # the committed reference report
    python -m ch01_economics.cost --results reports/<hw>/results.json --price-per-hour 0.5
    python -m ch01_economics.cost --monthly-tokens 2e9 --json

Every measured number names the report key it comes from (``benchmark.field``, see
``ch01_economics.measured``); a key the report lacks is printed as "not measured", never replaced by a
claimed figure. Prices are labelled assumptions (the SOURCES table) unless ``--price-per-hour`` is given.
Sections: 1.2.1-1.2.3 (cost structure), 1.3.1-1.3.2 (multiplying factors), 1.4.1 (mistakes).
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from ch01_economics.measured import load_report
from ch01_economics.mistakes import priced_mistakes
from ch01_economics.multiply import cost_decline_pct, factor_for_decline, factors, stack
from ch01_economics.sources import BY_ID, source_rows
from ch01_economics.structure import barriers, cost_rows, default_price
from common.cli import make_parser
from common.report import emit_json, print_table


def _non_negative(text: str) -> float:
    v = float(text)
    if v < 0:
        raise ValueError(text)
    return v


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch01_economics.cost", __doc__)
    parser.add_argument("--results", type=Path, default=None,
                        help="an appendix C results.json (default: the committed reference report)")
    parser.add_argument("--price-per-hour", type=_non_negative, default=None,
                        help="$/h of the machine that measured the report (default: a labelled assumption)")
    parser.add_argument("--monthly-tokens", type=_non_negative, default=1e9, help="tokens served per month")
    parser.add_argument("--json", action="store_true", help="print only the final JSON line")
    args = parser.parse_args(argv)

    report = load_report(args.results)
    price = default_price(report, args.price_per_hour)
    costs = cost_rows(report, price, args.monthly_tokens)
    bars = barriers(report)
    facs = factors(report)
    st = stack(report)
    mistakes = priced_mistakes(report)
    end = st.end_to_end

    if not args.json:
        where = f"{report.path}" if report.path else "no report found (everything below is 'not measured')"
        print(f"measured on: {report.machine}, torch {report.hardware.get('torch', '?')} ({where})")
        print(f"price: ${price.dollars_per_hour:.2f}/h [{price.source}]; volume: {args.monthly_tokens:,.0f} "
              "tokens/month (machine-hours at that throughput, fully used)\n")
        print_table([r.as_row() for r in costs], title="1.2.1 cost per 1M tokens = $/h / (3600 x tokens/s) x 1e6")
        print("      rows from one benchmark share a workload; across benchmarks compare orders of magnitude only")
        print()
        print_table([{"barrier": b.name, "measured": f"{b.value:.3g}" if b.value is not None else "not measured",
                      "what it means": b.meaning, "key": ", ".join(b.keys)} for b in bars],
                    title="1.2.2 three cost barriers, measured here")
        best = max((r for r in costs if r.vs_baseline), key=lambda r: r.vs_baseline, default=None)
        if best:
            print(f"\n1.2.3 at the same budget, '{best.what}' serves {best.vs_baseline:.1f}x the tokens of "
                  f"transformers' generate (quoted trend: [a16z_llmflation] {BY_ID['a16z_llmflation'].figure})")
        print()
        print_table([{"technique": f.technique, "ch": f.chapter, "x": f"{f.value:.2f}" if f.value else "not measured",
                      "in product": "yes" if f.in_product else "no", "basis": f.why, "key": ", ".join(f.keys)}
                     for f in facs], title="1.3.1 factors measured here")
        if st.product:
            print(f"\n1.3.2 product of the measured factors: {st.product:.1f}x -> cost per token "
                  f"-{cost_decline_pct(st.product):.1f}% (an upper bound: separate baselines)")
        print(f"      measured end to end [{end.key}]: {end.show('.2f')}x"
              + (f" -> -{cost_decline_pct(end.value):.0f}%" if end.measured else ""))
        print(f"      quoted: [ark_300x] {BY_ID['ark_300x'].figure}; [ark_86pct] {BY_ID['ark_86pct'].figure} "
              f"(= a {factor_for_decline(86):.1f}x factor)")
        if st.missing:
            print(f"      not measured, left out: {', '.join(st.missing)}")
        print()
        print_table([{"#": m.number, "mistake": m.title, "belief": m.belief, "what it costs (measured)": m.consequence}
                     for m in mistakes], title="1.4.1 five common mistakes")
        print("      keys: " + "; ".join(f"{m.number}: {', '.join(f.key for f in m.figures)}" for m in mistakes))
        print()
        print_table(source_rows(), title="SOURCES: every figure quoted, not measured")

    emit_json({
        "bench": "ch01_economics.cost", "report": str(report.path) if report.path else None,
        "machine": report.machine, "price_per_hour": price.dollars_per_hour, "price_source": price.source,
        "monthly_tokens": args.monthly_tokens,
        "cost_per_1m_tokens": {r.key: r.cost_per_1m for r in costs},
        "barriers": {b.name: b.value for b in bars},
        "factors": {f.technique: f.value for f in facs},
        "factor_product": st.product, "factor_product_cost_decline_pct":
            cost_decline_pct(st.product) if st.product else None,
        "engine_vs_hf": end.value,
        "mistakes": [{"title": m.title, "keys": [f.key for f in m.figures], "values": [f.value for f in m.figures]}
                     for m in mistakes],
        "not_measured": sorted({f.key for m in mistakes for f in m.figures if not f.measured}
                               | {k for r in costs if r.cost_per_1m is None for k in [r.key]} | set(st.missing)),
        "sources": [asdict(s) for s in map(BY_ID.get, BY_ID)],
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
