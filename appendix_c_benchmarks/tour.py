"""The guided tour (``make demo``): the environment, the embedded model answering, then one measured line
per chapter, and ``reports/demo.md`` with the plots.

Each chapter contributes ``chNN_x/headline.py`` with ``headline(smoke=False) -> Headline``. A chapter
whose headline fails is reported as failed and the tour goes on. Every number printed here is measured
in this run.

    python -m appendix_c_benchmarks.tour            # the full tour (about 10-15 minutes on 2 cores)
    python -m appendix_c_benchmarks.tour --smoke    # tiny sizes, for CI
    python -m appendix_c_benchmarks.tour --only ch04 ch05
"""

from __future__ import annotations

import importlib
import platform
import sys
import time
import traceback
from dataclasses import dataclass

import torch

from common.bench import hardware_stamp
from common.chat import DEMO_PROMPTS, chat_ids
from common.cli import friendly_errors, make_parser
from common.paths import reports_dir
from common.report import Headline

CHAPTERS = (
    ("ch02", "ch02_gpu.headline"),
    ("ch03", "ch03_env.headline"),
    ("ch04", "ch04_kvcache.headline"),
    ("ch05", "ch05_scheduling.headline"),
    ("ch06", "ch06_quantization.headline"),
    ("ch07", "ch07_speculative.headline"),
    ("ch08", "ch08_production.headline"),
    ("ch09", "ch09_advanced.headline"),
)


@dataclass(frozen=True)
class TourLine:
    chapter: str
    status: str  # "ok" | "failed" | "not built"
    text: str
    seconds: float
    headline: Headline | None = None


def environment_summary() -> list[str]:
    s = hardware_stamp()
    return [
        f"machine : {s.cpu} ({s.cores} cores, torch threads {s.threads}); GPU: {s.gpu or 'none'}",
        f"software: Python {platform.python_version()}, torch {s.torch}, {s.os}",
    ]


def embedded_model_answers(max_new_tokens: int = 40) -> Headline:
    """The embedded model's greedy answers to the demo prompts, with decode speed (transformers, fp32)."""
    from common.loader import load_hf_model, load_tokenizer

    tok = load_tokenizer()
    model = load_hf_model()
    answers, figures = [], {}
    with torch.no_grad():  # warm-up: the first call pays for lazy initialisation, not decoding
        model.generate(torch.tensor([chat_ids(tok, DEMO_PROMPTS[0])]), max_new_tokens=2, do_sample=False)
    for i, prompt in enumerate(DEMO_PROMPTS):
        ids = torch.tensor([chat_ids(tok, prompt)])
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False)
        dt = time.perf_counter() - t0
        new = out[0, ids.shape[1]:]
        text = tok.decode(new, skip_special_tokens=True).strip()
        answers.append(f"  Q: {prompt}\n  A: {text}   ({len(new)} tokens, {len(new) / dt:.1f} tok/s)")
        figures[f"answer_{i}"] = text
        figures[f"tok_s_{i}"] = len(new) / dt
    return Headline("model", "\n".join(answers), figures)


def run_chapter(chapter: str, module: str, smoke: bool) -> TourLine:
    t0 = time.perf_counter()
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return TourLine(chapter, "not built", "no headline module yet", 0.0)
        raise
    try:
        h = mod.headline(smoke=smoke)
    except Exception as exc:  # noqa: BLE001 - one chapter failing must not end the tour
        traceback.print_exc(file=sys.stderr)
        return TourLine(chapter, "failed", f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)
    return TourLine(chapter, "ok", h.text, time.perf_counter() - t0, h)


def write_demo_report(env: list[str], model: Headline, lines: list[TourLine]) -> str:
    out = reports_dir()
    md = ["# Guided tour", "", "Measured on this machine in this run.", "", *[f"- {e}" for e in env], "",
          "## The embedded model", "", "```", model.text, "```", "", "## One line per chapter", "",
          "| chapter | status | result | seconds |", "|---|---|---|---|"]
    for ln in lines:
        md.append(f"| {ln.chapter} | {ln.status} | {ln.text.replace('|', '/')} | {ln.seconds:.1f} |")
    for ln in lines:
        for plot in (ln.headline.plots if ln.headline else ()):
            md += ["", f"![{ln.chapter}]({plot})"]
    path = out / "demo.md"
    path.write_text("\n".join(md) + "\n")
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m appendix_c_benchmarks.tour", __doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    parser.add_argument("--only", nargs="*", default=None, help="chapters to run, e.g. ch04 ch05")
    args = parser.parse_args(argv)
    known = {c for c, _ in CHAPTERS}
    if args.only and not set(args.only) <= known:
        parser.error(f"unknown chapter(s) {sorted(set(args.only) - known)}; choose from {sorted(known)}")
    t0 = time.perf_counter()
    with friendly_errors():
        env = environment_summary()
        print("\n".join(env), flush=True)
        model = embedded_model_answers(max_new_tokens=20 if args.smoke else 40)
        print("\nSmolLM2-135M-Instruct (embedded, fp32, greedy, transformers):")
        print(model.text, flush=True)
        print()
        lines = []
        for chapter, module in CHAPTERS:
            if args.only and chapter not in args.only:
                continue
            line = run_chapter(chapter, module, args.smoke)
            lines.append(line)
            mark = {"ok": "", "failed": "FAILED: ", "not built": "(not built yet) "}[line.status]
            print(f"{chapter}: {mark}{line.text}", flush=True)
        report = write_demo_report(env, model, lines)
    failed = [ln.chapter for ln in lines if ln.status == "failed"]
    print(f"\ntour finished in {time.perf_counter() - t0:.0f} s; report: {report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
