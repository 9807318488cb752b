"""Appendix C in one command: every chapter's benchmark, one report (``make bench``).

    python -m appendix_c_benchmarks                 # full run (long: every benchmark at full size)
    python -m appendix_c_benchmarks --smoke         # a few minutes: tiny sizes, every chapter present
    python -m appendix_c_benchmarks --only ch04_kvcache ch05_scheduling   # refreshes them in the report
    python -m appendix_c_benchmarks --out reports/reference/cpu-2c   # where the committed report goes

Writes ``reports/<hardware-stamp>/results.json``, ``report.md`` and PNG charts, rewritten after every
benchmark. A failed benchmark is a row in the report, not the end of the run; the exit code is 1 when
any benchmark failed. With ``--only``, the other benchmarks of an existing report in ``--out`` stay.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tqdm import tqdm

from appendix_c_benchmarks.registry import BENCHMARKS, by_key
from appendix_c_benchmarks.report import write_report
from appendix_c_benchmarks.runner import BenchResult, run_benchmark
from common.bench import hardware_stamp, stamp_dict
from common.cli import make_parser
from common.paths import reports_dir
from common.report import emit_json, print_table


def previous_results(path: Path, smoke: bool) -> dict[str, BenchResult]:
    """Benchmarks already in ``path`` (a results.json), when it was a run of the same kind."""
    if not path.exists():
        return {}
    payload = json.loads(path.read_text())
    if bool(payload.get("smoke")) != smoke:
        return {}
    return {k: BenchResult(**{f: v.get(f) for f in ("key", "status", "seconds", "data", "error")})
            for k, v in payload.get("benchmarks", {}).items() if k in by_key()}


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m appendix_c_benchmarks", __doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a few minutes in all")
    parser.add_argument("--only", nargs="*", default=None, help=f"benchmark keys: {', '.join(by_key())}")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default reports/<hardware>)")
    parser.add_argument("--device", default=None, help="passed to every benchmark (e.g. cuda)")
    args = parser.parse_args(argv)
    specs = list(BENCHMARKS)
    if args.only:
        unknown = set(args.only) - set(by_key())
        if unknown:
            parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(by_key())}")
        specs = [s for s in specs if s.key in args.only]
    out = args.out or reports_dir(hardware_stamp().short())
    extra = ("--device", args.device) if args.device else ()

    # --only refreshes those benchmarks inside an existing report of the same kind (full or smoke)
    results = previous_results(out / "results.json", smoke=args.smoke) if args.only else {}
    bar = tqdm(specs, desc="appendix C", unit="bench", file=sys.stderr)
    for spec in bar:
        bar.set_postfix_str(spec.key)
        results[spec.key] = run_benchmark(spec, smoke=args.smoke, extra=extra, log_dir=out / "logs")
        results = {s.key: results[s.key] for s in BENCHMARKS if s.key in results}  # registry order
        report = write_report(out, results, stamp_dict(), smoke=args.smoke)  # after each: a crash keeps the rest

    print_table([{"benchmark": r.key, "status": r.status, "seconds": round(r.seconds, 1), "note": r.error[:70]}
                 for r in results.values()], title=f"appendix C ({'smoke' if args.smoke else 'full'})")
    print(f"report: {report}")
    failed = [r.key for r in results.values() if r.status in {"failed", "timeout"}]
    emit_json({"report": str(report), "status": {k: r.status for k, r in results.items()},
               "failed": failed, "hardware": stamp_dict()})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
