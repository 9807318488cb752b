"""Chapter 3's practical checklist (实战检查清单): is this environment ready for the book's code?

    python -m ch03_env.checklist          # the doctor's items, plus threads and the CPU kernels' SIMD path
    python -m ch03_env.checklist --json   # one JSON line

The doctor (:mod:`ch03_env.doctor`) is the core of it: Python, dependencies, torch and CUDA, GPUs, vLLM,
Docker, disk, RAM, the embedded model, ports. This adds what chapter 3's checklist asks of a CPU box: the
thread count against the cores (ch02's check) and which SIMD path the C++ kernels will take here (AVX-512,
AVX2 or scalar, chosen from the CPU's flags at run time; ``LLMIC_SIMD`` caps it). Exit code 1 on a FAIL.
"""

from __future__ import annotations

import os
import sys

from ch02_gpu.checklist import check_threads
from ch03_env.doctor import run_checks as doctor_checks
from common.checklist import OK, WARN, Check, add_checklist_args, report
from common.cli import friendly_errors, make_parser
from common.cpu import SIMD_ENV, native_simd_level, simd_level


def check_simd_path(level: str, native: str) -> Check:
    if level == "scalar":
        return Check("simd-path", WARN, f"C++ kernels take the scalar path (CPU: {native})",
                     f"unset {SIMD_ENV} if it caps the level; a CPU with AVX2 runs them several times faster.")
    capped = f", capped from {native} by {SIMD_ENV}" if level != native else ""
    return Check("simd-path", OK, f"C++ kernels take the {level} path{capped}")


def run_checks() -> list[Check]:
    import psutil
    import torch

    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    return [*doctor_checks(),
            check_threads(torch.get_num_threads(), cores, os.environ.get("OMP_NUM_THREADS")),
            check_simd_path(simd_level(), native_simd_level())]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch03_env.checklist", __doc__)
    add_checklist_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        return report("chapter 3 checklist: the environment", run_checks(), json_only=args.json)


if __name__ == "__main__":
    sys.exit(main())
