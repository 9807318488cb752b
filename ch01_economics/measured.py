"""Read measured figures from a committed appendix C report, each named by the key it comes from.

A key is ``benchmark.field`` (``ch05_scheduling.engine_tok_s``), optionally deeper: a dict member
(``ch06_quantization.methods.bf16.weight_bytes``) or a list member picked by one of its fields
(``ch02_roofline.points[batch=1].tokens_per_s``). A key the report lacks, or a benchmark that did not run
or failed, is a :class:`Figure` with ``value=None`` and the reason ("not measured: ..."): no fallback
to a claimed number, ever.

    python -m ch01_economics.measured --key ch05_scheduling.engine_vs_hf
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.cli import make_parser
from common.paths import REPO_ROOT

_PICK = re.compile(r"^(?P<name>[^\[]+)\[(?P<field>[^=\]]+)=(?P<value>[^\]]+)\]$")


@dataclass(frozen=True)
class Figure:
    """One measured number and where it comes from; ``value`` is None when it was not measured."""

    key: str
    value: float | None
    note: str = ""  # "" when measured, else "not measured: <why>"

    @property
    def measured(self) -> bool:
        return self.value is not None

    def show(self, fmt: str = ".3g") -> str:
        return format(self.value, fmt) if self.value is not None else "not measured"


@dataclass(frozen=True)
class Report:
    """A loaded results.json: where it came from, the machine that measured it, its benchmarks."""

    path: Path | None
    hardware: dict[str, Any]
    benchmarks: dict[str, Any]
    smoke: bool = False

    @property
    def machine(self) -> str:
        hw = self.hardware
        if not hw:
            return "no report"
        return hw.get("gpu") or f"{hw.get('cpu', '?')} ({hw.get('cores', '?')} cores)"


def reference_reports(root: Path = REPO_ROOT) -> list[Path]:
    return sorted((root / "reports" / "reference").glob("*/results.json"))


def load_report(path: Path | None = None) -> Report:
    """The report at ``path``, or the first committed reference report; an empty report if there is none."""
    if path is None:
        found = reference_reports()
        if not found:
            return Report(None, {}, {})
        path = found[0]
    payload = json.loads(Path(path).read_text())
    return Report(Path(path), payload.get("hardware") or {}, payload.get("benchmarks") or {},
                  bool(payload.get("smoke")))


def _step(node: Any, part: str) -> Any:
    m = _PICK.match(part)
    if m:
        items = node.get(m["name"]) if isinstance(node, dict) else None
        if not isinstance(items, list):
            return None
        for item in items:
            if isinstance(item, dict) and str(item.get(m["field"])) == m["value"]:
                return item
        return None
    return node.get(part) if isinstance(node, dict) else None


def figure(report: Report, key: str) -> Figure:
    """The number at ``key`` in ``report``, or a Figure saying why it is not measured."""
    bench, _, rest = key.partition(".")
    entry = report.benchmarks.get(bench)
    if entry is None:
        return Figure(key, None, f"not measured: {bench} is not in the report")
    if entry.get("status", "ok") != "ok":
        return Figure(key, None, f"not measured: {bench} {entry.get('status')}")
    node: Any = entry.get("data") or {}
    for part in rest.split(".") if rest else []:
        node = _step(node, part)
        if node is None:
            return Figure(key, None, f"not measured: {bench} has no {rest!r}")
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return Figure(key, None, f"not measured: {key} is not a number")
    return Figure(key, float(node))


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch01_economics.measured", __doc__)
    parser.add_argument("--results", type=Path, default=None, help="results.json (default: the reference report)")
    parser.add_argument("--key", action="append", required=True, help="benchmark.field[.sub...]; repeatable")
    args = parser.parse_args(argv)
    report = load_report(args.results)
    for key in args.key:
        f = figure(report, key)
        print(f"{key} = {f.show('.6g')}{'  (' + f.note + ')' if f.note else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
