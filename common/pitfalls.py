"""The book's 常见误区 (common pitfalls) as measurements: one :class:`Pitfall` per wrong belief.

Each chapter's ``chNN_x/pitfalls.py`` runs that chapter's own code on the embedded model (or its
config) and returns a list of :class:`Pitfall`: the wrong belief, what was measured, and the
consequence as a number. :func:`pitfalls_main` is the command line they share: the common flags, a
table, then one final JSON line with every pitfall's key numbers::

    def run(smoke: bool) -> list[Pitfall]: ...

    def main(argv=None) -> int:
        return pitfalls_main("python -m ch04_kvcache.pitfalls", __doc__, run, argv)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Pitfall:
    """One wrong belief, the numbers that refute it (``measured``), and what believing it costs."""

    chapter: str
    title: str
    belief: str
    measured: dict[str, Any] = field(default_factory=dict)
    consequence: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"title": self.title, **self.measured}


def _short(value: Any) -> str:
    if isinstance(value, float):
        return format(value, ".3g")
    return str(value)


def pitfall_rows(pitfalls: list[Pitfall]) -> list[dict[str, str]]:
    """One table row per pitfall: title, belief, measured (``key=value``), consequence."""
    return [{"#": str(i), "pitfall": p.title, "wrong belief": p.belief,
             "measured": ", ".join(f"{k}={_short(v)}" for k, v in p.measured.items()),
             "consequence": p.consequence} for i, p in enumerate(pitfalls, 1)]


def pitfalls_payload(bench: str, pitfalls: list[Pitfall]) -> dict[str, Any]:
    from common.bench import stamp_dict

    return {"bench": bench, "pitfalls": [p.as_dict() for p in pitfalls],
            "hardware": stamp_dict()}


def print_pitfalls(pitfalls: list[Pitfall]) -> None:
    """Each pitfall as a short block (the columns are sentences, too wide for one table row)."""
    from common.report import print_table

    rows = pitfall_rows(pitfalls)
    print_table([{"#": r["#"], "pitfall": r["pitfall"], "measured": r["measured"]} for r in rows],
                title="常见误区 (common pitfalls), measured here")
    for r in rows:
        print(f"\n{r['#']}. {r['pitfall']}\n   belief:      {r['wrong belief']}\n"
              f"   consequence: {r['consequence']}")
    print(flush=True)


def pitfalls_main(prog: str, doc: str | None, run: Callable[[bool], list[Pitfall]],
                  argv: list[str] | None = None) -> int:
    """The CLI of every ``chNN_x/pitfalls.py``: common flags (no ``--model``), seed, run, print, JSON."""
    from common.cli import add_common_args, friendly_errors, make_parser, seed_everything
    from common.report import emit_json

    parser = make_parser(prog, doc)
    add_common_args(parser, model=False)
    args = parser.parse_args(argv)
    with friendly_errors():
        seed_everything(args.seed)
        pitfalls = run(args.smoke)
        if not args.json:
            print_pitfalls(pitfalls)
        emit_json(pitfalls_payload(prog.split()[-1], pitfalls))
    return 0
