"""Keep README.md's results section equal to the committed reference report(s).

The section between ``<!-- results:begin -->`` and ``<!-- results:end -->`` is generated from
``reports/reference/*/results.json``; a test runs ``--check`` so README and report cannot drift.

    python -m appendix_c_benchmarks.readme_results           # rewrite the section
    python -m appendix_c_benchmarks.readme_results --check   # exit 1 if README differs
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from appendix_c_benchmarks.report import ratio_rows
from appendix_c_benchmarks.runner import BenchResult
from common.cli import make_parser
from common.paths import REPO_ROOT

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def reference_reports(root: Path = REPO_ROOT) -> list[Path]:
    return sorted((root / "reports" / "reference").glob("*/results.json"))


def render(reports: list[Path], root: Path = REPO_ROOT) -> str:
    lines = [BEGIN, ""]
    if not reports:
        lines += ["No reference report is committed yet (`python -m appendix_c_benchmarks --out "
                  "reports/reference/<name>` writes one).", ""]
    for path in reports:
        payload = json.loads(path.read_text())
        hw = payload.get("hardware", {})
        results = {k: BenchResult(**{f: v.get(f) for f in ("key", "status", "seconds", "data", "error")})
                   for k, v in payload.get("benchmarks", {}).items()}
        kind = "smoke run" if payload.get("smoke") else "full run"
        where = hw.get("gpu") or f"{hw.get('cpu')} ({hw.get('cores')} cores)"
        rel = path.parent.relative_to(root)
        lines += [f"**{where}**, torch {hw.get('torch')}, {kind} — [report]({rel}/report.md)", "",
                  "| measured ratio | x |", "|---|---|"]
        lines += [f"| {label} | {value:.2f} |" for label, value in ratio_rows(results)]
        missing = [k for k, r in results.items() if r.status != "ok"]
        if missing:
            lines += ["", f"Not measured in that run: {', '.join(missing)}."]
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def updated_readme(text: str, section: str) -> str:
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        return head + section + tail
    return text.rstrip("\n") + "\n\n## Results on our machines\n\n" + section + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m appendix_c_benchmarks.readme_results", __doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md is out of date")
    parser.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    new = updated_readme(text, render(reference_reports()))
    if args.check:
        if new != text:
            print("README.md results section is out of date: run python -m appendix_c_benchmarks.readme_results",
                  file=sys.stderr)
            return 1
        print("README.md results section matches the reference reports")
        return 0
    args.readme.write_text(new)
    print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
