"""Run one chapter benchmark in a subprocess and capture its final JSON line.

A subprocess per benchmark keeps memory, threads and ``torch.compile`` caches of one chapter from
skewing the next, and a crash in one is a row in the report, never the end of the run.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appendix_c_benchmarks.registry import BenchSpec
from common.paths import REPO_ROOT
from common.report import parse_json_line


@dataclass
class BenchResult:
    key: str
    status: str  # "ok" | "failed" | "missing" | "timeout"
    seconds: float
    data: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    log: str = ""


def module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def run_benchmark(spec: BenchSpec, smoke: bool, extra: tuple[str, ...] = (), log_dir: Path | None = None,
                  python: str = sys.executable) -> BenchResult:
    """Run ``python -m spec.module ...``; parse its JSON line; never raise for the benchmark's failures."""
    if not module_exists(spec.module):
        return BenchResult(spec.key, "missing", 0.0, error=f"{spec.module} does not exist yet")
    cmd = [python, "-m", spec.module, *spec.args, *extra]
    if smoke:
        cmd.append("--smoke")
    timeout = spec.smoke_timeout_s if smoke else spec.full_timeout_s
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return BenchResult(spec.key, "timeout", time.perf_counter() - t0, error=f"exceeded {timeout} s", log=out)
    seconds = time.perf_counter() - t0
    log = proc.stdout + ("\n--- stderr ---\n" + proc.stderr if proc.stderr else "")
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"{spec.key}.log").write_text(log)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
        return BenchResult(spec.key, "failed", seconds, error=f"exit {proc.returncode}: {tail}", log=log)
    try:
        data = parse_json_line(proc.stdout)
    except ValueError:
        return BenchResult(spec.key, "failed", seconds, error="no final JSON line in its output", log=log)
    return BenchResult(spec.key, "ok", seconds, data=data, log=log)
