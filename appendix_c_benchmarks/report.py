"""Write appendix C's report: ``results.json``, ``report.md`` (sections C.1-C.5) and PNG charts.

The report is built only from what the benchmarks printed in their JSON lines; a benchmark that failed
or does not exist yet appears as such, so the report never shows a number that was not measured.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from appendix_c_benchmarks.registry import BENCHMARKS
from appendix_c_benchmarks.roi_cases import MissingMeasurement, all_cases
from appendix_c_benchmarks.runner import BenchResult
from common.report import format_table, save_plot

# Ratios the book's claims are about (C.3); each is a "higher is better" ratio measured side by side.
HEADLINE_RATIOS = (
    ("ch04_kvcache", "speedup_kv_cache", "KV cache vs none"),
    ("ch04_kvcache", "paged_vs_contiguous_decode", "paged vs contiguous decode"),
    ("ch05_scheduling", "continuous_vs_static", "continuous vs static batching (offline throughput)"),
    ("ch05_rate_slo", "continuous_vs_static_rate_at_slo", "continuous vs static (request rate at a p90 target)"),
    ("ch05_scheduling", "engine_vs_hf", "our engine vs transformers"),
    ("ch05_scheduling", "engine_vs_vllm", "our engine vs vLLM-CPU"),
    ("ch07_speculative", "speedup_prompt_lookup", "prompt lookup vs plain decode"),
    ("ch07_speculative", "speedup_draft", "draft-model speculation"),
    ("ch08_production", "server_vs_vllm", "our server vs vLLM server"),
    ("ch09_advanced", "compile_speedup", "torch.compile decode"),
    ("ch09_advanced", "decode_vs_llama_cpp", "our batch-1 decode vs llama.cpp"),
)
SECTIONS = (
    ("C.1", "Test environment"),
    ("C.2", "Model performance (dtypes, engines, hardware, quantized vs not)"),
    ("C.3", "Effect of each optimisation"),
    ("C.4", "Real-world scenarios on ShareGPT (chat, batch, mixed) and cost"),
    ("C.5", "ROI cases"),
)


def scalar_figures(data: dict[str, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    """Flatten a JSON result into (key, scalar) rows, skipping the hardware stamp."""
    rows: list[tuple[str, Any]] = []
    for k, v in data.items():
        if k == "hardware":
            continue
        name = f"{prefix}{k}"
        if isinstance(v, dict) and depth < 2:
            rows += scalar_figures(v, name + ".", depth + 1)
        elif isinstance(v, (int, float, str, bool)) or v is None:
            rows.append((name, v))
    return rows


def ratio_rows(results: dict[str, BenchResult]) -> list[tuple[str, float]]:
    rows = []
    for key, field, label in HEADLINE_RATIOS:
        r = results.get(key)
        v = r.data.get(field) if r and r.status == "ok" else None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            rows.append((label, float(v)))
    return rows


def _section_lines(section: str, results: dict[str, BenchResult]) -> Iterable[str]:
    for spec in BENCHMARKS:
        if not any(s == section or s.startswith(section + ".") for s in spec.sections):
            continue
        r = results.get(spec.key)
        yield f"### {spec.key} — {spec.description}"
        yield ""
        if r is None:
            yield "_not run in this report_"
        elif r.status != "ok":
            yield f"_{r.status}: {r.error}_"
        else:
            rows = scalar_figures(r.data)
            yield "```"
            yield format_table([{"figure": k, "value": v} for k, v in rows][:40], floatfmt=".4g")
            yield "```"
            yield from (f"![{k}]({v})" for k, v in r.data.items() if isinstance(v, str) and v.startswith("plots/"))
            yield f"({r.seconds:.0f} s)"
        yield ""


def collect_plots(out_dir: Path, results: dict[str, BenchResult]) -> None:
    """Copy each benchmark's PNGs into ``out_dir/plots`` and point its data there (relative paths), so
    a committed report carries its figures instead of paths on the machine that measured them."""
    plots = out_dir / "plots"
    for r in results.values():
        for key, value in list(r.data.items()):
            if not (isinstance(value, str) and value.endswith(".png")):
                continue
            src = Path(value)
            if src.is_absolute() and src.is_file():
                plots.mkdir(parents=True, exist_ok=True)
                dst = plots / f"{r.key}_{src.name}"
                if src.resolve() != dst.resolve():
                    shutil.copyfile(src, dst)
                r.data[key] = str(dst.relative_to(out_dir))


def write_report(out_dir: Path, results: dict[str, BenchResult], stamp: dict[str, Any], smoke: bool) -> Path:
    """Write results.json, report.md and charts into ``out_dir``; return the report path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    collect_plots(out_dir, results)
    payload = {"hardware": stamp, "smoke": smoke,
               "benchmarks": {k: asdict(r) | {"log": ""} for k, r in results.items()}}
    (out_dir / "results.json").write_text(json.dumps(payload, indent=1, default=str))

    ratios = ratio_rows(results)
    charts = []
    if ratios:
        charts.append(save_plot(out_dir / "ratios.png", {label: ([0], [v]) for label, v in ratios},
                                kind="bar", title="Measured speedups (x, higher is better)",
                                ylabel="ratio", hlines={"1x": 1.0}).name)
    try:
        cases, case_error = all_cases(payload["benchmarks"]), ""
    except MissingMeasurement as exc:  # a benchmark renamed a key: say so in the report, keep the rest
        cases, case_error = [], f"ROI cases not computed: {exc.args[0]}"
    md = [f"# Appendix C report — {stamp.get('cpu')}{' / ' + stamp['gpu'] if stamp.get('gpu') else ''}", "",
          f"{'Smoke run (tiny sizes): ratios are indicative only.' if smoke else 'Full run.'} "
          "Every figure below was measured by this harness on this machine (a benchmark refreshed with "
          "`--only` is re-measured whole); book claims are labelled.", ""]
    for sec, title in SECTIONS:
        md += [f"## {sec} {title}", ""]
        if sec == "C.1":
            md += ["```", format_table([{"item": k, "value": v} for k, v in stamp.items()]), "```", "",
                   "Method: each benchmark runs in its own process, warms up, synchronises, repeats; ratios are "
                   "measured side by side in one run.", ""]
            status = [{"benchmark": r.key, "status": r.status, "seconds": round(r.seconds, 1), "note": r.error}
                      for r in results.values()]
            md += ["```", format_table(status), "```", ""]
        elif sec == "C.3":
            if ratios:
                md += ["```", format_table([{"ratio": lbl, "x": v} for lbl, v in ratios], floatfmt=".2f"),
                       "```", "", "![ratios](ratios.png)", ""]
            md += list(_section_lines(sec, results))
        elif sec == "C.5":
            md += ["Scenario inputs are the book's (labelled); the basis column names the ratio measured in "
                   "this run, or says \"not measured\" and which command measures it.", ""]
            md += [case_error, ""] if case_error else [
                "```", format_table([{"case": c.case, "before $/mo": c.monthly_cost_before,
                                      "after $/mo": c.monthly_cost_after, "saving %": c.saving_pct,
                                      "book": c.book_claim, "measured": c.measured_effect,
                                      "basis": c.measured_basis} for c in cases], floatfmt=",.0f"), "```", ""]
        else:
            md += list(_section_lines(sec, results))
    path = out_dir / "report.md"
    path.write_text("\n".join(md) + "\n")
    return path
