"""Chapter 6's C++ kernels built as one extension, from the C++ files in ``csrc/`` (book 6.1, 6.2, 6.5).

    csrc/gemv.h  gemv.cpp      the decode GEMV, fp32 and uint8 weight-only     (cpu_gemv.py)
    csrc/w8a8.h  w8a8.cpp      int8 weights x int8 activations                 (cpu_w8a8.py)
    csrc/packed.h packed.cpp   fp32 in a one-stream-per-thread layout          (cpu_packed.py)
    csrc/decode.cpp            the whole decode step in one call               (cpu_decode.py)
    csrc/ops.h bindings.cpp    the operators' declarations, the Python module
    common/csrc/simd.h         AVX2 helpers shared with other chapters' kernels

The Python beside each kernel explains it and wraps it; this module only builds or loads the extension,
once per process, with ``common.cpp_ext.load_extension`` (one compile per file, in parallel).
"""

from __future__ import annotations

import functools
from pathlib import Path

from common import cpp_ext

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = [CSRC / f for f in ("gemv.cpp", "w8a8.cpp", "packed.cpp", "decode.cpp", "bindings.cpp")]


@functools.lru_cache(maxsize=1)
def module():
    return cpp_ext.load_extension("ch06_cpu_kernels", SOURCES, [CSRC])
