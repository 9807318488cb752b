"""Map an error message (or a whole log) to its troubleshooting entry: symptom, cause, fix (B.1, B.2.1).

    python -m appendix_b.diagnose "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    python -m appendix_b.diagnose --file server.log        # B.2.1: scan a log, every entry it shows
    python -m ch03_env.doctor | python -m appendix_b.diagnose -   # what the doctor's WARN/FAIL lines mean
    python -m appendix_b.diagnose --list                   # every entry

Lines a checklist or the doctor marks ``OK`` are skipped (an OK line may name a setting an entry is about), and
so are their final JSON lines.
Exit code 0 when something was recognised, 1 when nothing was (then B.2.3: run
``python -m appendix_b.checklist`` and fix from the top).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from appendix_b.entries import ENTRIES, Entry
from common.cli import make_parser
from common.report import emit_json, print_table


@dataclass(frozen=True)
class Diagnosis:
    entry: Entry
    line: str  # the first line that matched


def diagnose(text: str) -> list[Diagnosis]:
    """Each entry whose patterns match a line of ``text``, in the order the lines show them."""
    found: dict[str, Diagnosis] = {}
    for raw in text.splitlines() or [text]:
        line = raw.strip()
        if not line or line.split(maxsplit=1)[0] == "OK" or (line.startswith("{") and line.endswith("}")):
            continue
        for e in ENTRIES:
            if e.id not in found and e.matches(line):
                found[e.id] = Diagnosis(e, line)
    return list(found.values())


def explain(d: Diagnosis) -> str:
    e = d.entry
    return (f"[{e.section} {e.id}] {e.title}\n  seen:    {d.line[:160]}\n  symptom: {e.symptom}\n"
            f"  cause:   {e.cause}\n  fix:     {e.fix}")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m appendix_b.diagnose", __doc__)
    parser.add_argument("text", nargs="*", help="the error text ('-' reads stdin)")
    parser.add_argument("--file", type=Path, action="append", default=[], help="a log file to scan (repeatable)")
    parser.add_argument("--list", action="store_true", help="print every entry and exit")
    parser.add_argument("--json", action="store_true", help="print only the final JSON line")
    args = parser.parse_args(argv)
    if args.list:
        print_table([{"section": e.section, "id": e.id, "title": e.title, "fix": e.fix[:90]} for e in ENTRIES])
        emit_json({"entries": [e.id for e in ENTRIES]})
        return 0
    parts = [sys.stdin.read() if t == "-" else t for t in args.text]
    parts += [p.read_text(errors="replace") for p in args.file]
    if not parts:
        parser.error("give the error text, '-' for stdin, or --file LOG")
    found = diagnose("\n".join(parts))
    if not args.json:
        if found:
            print("\n\n".join(explain(d) for d in found))
        else:
            print("no known entry matches; B.2.3: run `python -m appendix_b.checklist` and fix from the top, "
                  "then `python -m ch03_env.doctor`")
    emit_json({"matched": [d.entry.id for d in found], "sections": [d.entry.section for d in found],
               "lines": [d.line[:300] for d in found]})
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
