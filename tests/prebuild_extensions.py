"""Build the suite's C++ extensions once, before the tests that need them: ``python tests/prebuild_extensions.py``.

``tests/conftest.py`` starts this in the background when a pytest-xdist run begins (``make test``). Without it
the first test on each worker that needs an extension builds it, and a test on the other worker that needs
the same one waits on torch's build lock: measured on a 2-core machine, 37 s of one worker idle for the
ch06 kernels alone. Started at once, the builds overlap the vLLM engine starts (which wait on imports and
one core), and every test finds its extension built. Each build lands in the same cache as a test's own
(``common.cpp_ext``), so a build that fails here fails again, with its error, in the test that needs it.
The scalar build of ch06's kernels is the one ``tests/ch06/test_cpu_kernels_isa.py`` runs against.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILDS = [  # (what, python code that builds it, extra environment)
    ("ch06 kernels, native", "from ch06_quantization.cpu_kernels import module; module()", {}),
    ("ch04 paged decode", "from ch04_kvcache.paged_decode_cpu import build; build()", {}),
    ("ch09 fused RMSNorm", "from ch09_advanced.cpp_op import build; build()", {}),
    ("ch06 kernels, scalar", "from ch06_quantization.cpu_kernels import module; module()", {"LLMIC_SIMD": "scalar"}),
]


def main() -> int:
    failed = 0
    for what, code, env in BUILDS:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, **env),
                              capture_output=True, text=True)
        status = "ready (built now or found in the cache)" if proc.returncode == 0 else f"FAILED (the test that needs it will say why): " \
                                                      f"{proc.stderr.strip().splitlines()[-1:]}"
        failed += proc.returncode != 0
        print(f"{what}: {status} in {time.perf_counter() - t0:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
