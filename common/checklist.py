"""A chapter's 实战检查清单 (practical checklist) as a command: one OK / WARN / FAIL line per item, with the fix.

Every chapter from 2 to 9 has ``python -m chNN_x.checklist``. Each item is a small function over plain values
(the settings the reader passes on the command line and what was probed on this machine), so a test feeds it
the cases it needs (a budget too small, a port in use, a missing compiler) without that machine; the command
gathers the probes, runs the items and prints them. The exit code is 1 when an item FAILs, so a deployment
script can run the checklist before it starts a server. ch03's environment doctor prints its lines the same way.

    python -m ch04_kvcache.checklist --max-model-len 8192 --max-num-seqs 64 --kv-cache-gib 4
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from common.report import emit_json

OK, WARN, FAIL = "OK", "WARN", "FAIL"
STATUSES = (OK, WARN, FAIL)


@dataclass(frozen=True)
class Check:
    """One checklist line: what was checked, what was found and, when it is not OK, what to do."""

    name: str
    status: str  # OK | WARN | FAIL
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")
        if self.status != OK and not self.fix:
            raise ValueError(f"check {self.name!r} is {self.status} but says no fix")


def format_check(c: Check, width: int = 10) -> str:
    line = f"{c.status:<4}  {c.name:<{width}}  {c.detail}"
    return line + (f"\n      {'':<{width}}  fix: {c.fix}" if c.status != OK and c.fix else "")


def counts(checks: Iterable[Check]) -> dict[str, int]:
    checks = list(checks)
    return {s: sum(c.status == s for c in checks) for s in STATUSES}


def add_checklist_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print only the final JSON line")


def report(title: str | None, checks: list[Check], *, json_only: bool = False, key: str = "checklist") -> int:
    """Print the lines and the tally, then one JSON line; the exit code is 1 when anything FAILs."""
    n = counts(checks)
    if not json_only:
        if title:
            print(title)
        width = max((len(c.name) for c in checks), default=10)
        for c in checks:
            print(format_check(c, width))
        print(f"\n{n[OK]} OK, {n[WARN]} WARN, {n[FAIL]} FAIL on {platform.node() or 'this machine'}")
    emit_json({key: [asdict(c) for c in checks], "counts": n})
    return 1 if n[FAIL] else 0
