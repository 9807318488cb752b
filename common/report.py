"""Benchmark output: an aligned table for people, one final JSON line for machines, PNG plots.

Every benchmark in the repository ends its stdout with exactly one JSON object on one line; appendix C
finds it with :func:`parse_json_line`. Plots are written to files (never shown), and the plotting
helpers take data that was computed elsewhere.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _fmt(value: Any, floatfmt: str) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return format(value, floatfmt)
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]], headers: Sequence[str] | None = None,
                 floatfmt: str = ".3g", title: str | None = None) -> str:
    """Render rows (dicts, or sequences with ``headers``) as a fixed-width table; numbers right-aligned."""
    if rows and isinstance(rows[0], Mapping):
        headers = list(headers or rows[0].keys())
        body = [[r.get(h, "") for h in headers] for r in rows]  # type: ignore[union-attr]
    else:
        headers = list(headers or [])
        body = [list(r) for r in rows]
    cells = [[_fmt(v, floatfmt) for v in r] for r in body]
    numeric = [all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool) for r in body if i < len(r))
               for i in range(len(headers))]
    widths = [max([len(str(h))] + [len(c[i]) for c in cells if i < len(c)]) for i, h in enumerate(headers)]

    def line(vals: Sequence[str]) -> str:
        out = []
        for i, v in enumerate(vals):
            out.append(v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]))
        return "  ".join(out).rstrip()

    parts = []
    if title:
        parts.append(title)
    parts.append(line([str(h) for h in headers]))
    parts.append("  ".join("-" * w for w in widths))
    parts.extend(line(c) for c in cells)
    return "\n".join(parts)


def print_table(rows, headers=None, floatfmt: str = ".3g", title: str | None = None) -> None:
    print(format_table(rows, headers, floatfmt, title), flush=True)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return obj.item()
    return obj


def json_line(payload: Mapping[str, Any]) -> str:
    """One line of JSON (NaN/inf become null so every parser accepts it)."""
    return json.dumps(_jsonable(payload), sort_keys=False, separators=(", ", ": "))


def emit_json(payload: Mapping[str, Any]) -> None:
    """Print the benchmark's final JSON line. Call it last."""
    print(json_line(payload), flush=True)


def parse_json_line(stdout: str) -> dict[str, Any]:
    """The last line of ``stdout`` that is a JSON object (what :func:`emit_json` printed)."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    raise ValueError("no JSON object line found in the output")


def save_plot(path: str | Path, series: Mapping[str, tuple[Iterable[float], Iterable[float]]], *,
              title: str = "", xlabel: str = "", ylabel: str = "", logx: bool = False, logy: bool = False,
              hlines: Mapping[str, float] | None = None, kind: str = "line") -> Path:
    """Write a line (or bar) chart of named ``(x, y)`` series to a PNG file and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    if kind == "bar":
        labels = list(series)
        values = [list(series[k][1])[0] for k in labels]
        ax.bar(labels, values, color="#4C72B0")
        ax.tick_params(axis="x", rotation=20)
    else:
        for name, (xs, ys) in series.items():
            ax.plot(list(xs), list(ys), marker="o", markersize=3, label=name)
    for name, y in (hlines or {}).items():
        ax.axhline(y, linestyle="--", color="gray", linewidth=1)
        ax.annotate(name, xy=(0.01, y), xycoords=("axes fraction", "data"), fontsize=8, color="gray",
                    va="bottom")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if kind != "bar" and len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


@dataclass(frozen=True)
class Headline:
    """One chapter's line in the guided tour (``make demo``): text plus the measured figures behind it.

    Each chapter provides ``chNN_x/headline.py`` with ``headline(smoke: bool = False) -> Headline``; every
    number in ``text`` must come from ``figures``, measured in that call (or be labelled as a claim).
    """

    chapter: str
    text: str
    figures: dict[str, Any] = field(default_factory=dict)
    plots: tuple[str, ...] = ()
