"""Chapter 6's C++ kernels built as one extension: one g++ run (~1 min here) instead of one per file.

The sources live beside the Python that explains them (``cpu_gemv``, ``cpu_w8a8``, ``cpu_packed``,
``cpu_decode``); this module only concatenates them, in that order (the fused decoder calls the others),
and builds or loads the result once per process with ``common.cpp_ext.load_cpp``.
"""

from __future__ import annotations

import functools

from common import cpp_ext


@functools.lru_cache(maxsize=1)
def module():
    from ch06_quantization import cpu_decode, cpu_gemv, cpu_packed, cpu_w8a8

    parts = (cpu_gemv, cpu_w8a8, cpu_packed, cpu_decode)
    source = "\n".join(p.CPP_SOURCE for p in parts)
    return cpp_ext.load_cpp("ch06_cpu_kernels", source, [f for p in parts for f in p.FUNCTIONS], "cpu_kernels")
