"""What this CPU can run: its instruction-set flags, read at run time (book 2.1, 6.5, appendix B).

The project's machines differ (some x86-64 CPUs have AVX2 only, others AVX-512 with VNNI and bf16), and so
do readers'. Code that picks a SIMD path, a vLLM-CPU kernel or a dtype asks here instead of assuming the CPU
it was written on:

    from common.cpu import cpu_flags, simd_level
    simd_level()          # "avx512", "avx2" or "scalar"
    "avx512_vnni" in cpu_flags()

``LLMIC_SIMD=avx2`` or ``LLMIC_SIMD=scalar`` caps :func:`simd_level` below what the CPU has, so a test or a
reader can force the fallback paths on a machine that would otherwise never take them.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from pathlib import Path

SIMD_ENV = "LLMIC_SIMD"
LEVELS = ("scalar", "avx2", "avx512")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as the kernel reports them (``/proc/cpuinfo``); empty where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_simd_level(flags: frozenset[str] | None = None) -> str:
    """The widest x86 SIMD level the CPU has: ``avx512`` (F + BW + VL), ``avx2`` (with FMA) or ``scalar``."""
    flags = cpu_flags() if flags is None else flags
    if {"avx512f", "avx512bw", "avx512vl"} <= flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    return "scalar"


def simd_level(flags: frozenset[str] | None = None) -> str:
    """:func:`native_simd_level`, capped by ``LLMIC_SIMD`` when that names a lower level."""
    native = native_simd_level(flags)
    wanted = os.environ.get(SIMD_ENV, "").strip().lower()
    if not wanted:
        return native
    if wanted not in LEVELS:
        raise ValueError(f"{SIMD_ENV}={wanted!r}: use one of {', '.join(LEVELS)}")
    return LEVELS[min(LEVELS.index(wanted), LEVELS.index(native))]


# What torch's own kernels are told when LLMIC_SIMD caps the level: oneDNN (the fp32 linears the engine packs)
# and ATen's vectorised ops read these once, at their first use in the process.
TORCH_ISA_ENV = {"avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
                 "scalar": {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default"}}


def cap_torch_isa() -> dict[str, str]:
    """When ``LLMIC_SIMD`` caps the level, cap torch's fp32 kernels to it too; returns the variables it set.

    A benchmark that compares our AVX2 kernels with torch's fp32 on an AVX-512 machine would otherwise race
    AVX2 code against AVX-512 code, which no AVX2-only CPU does. It takes effect only before torch's first
    oneDNN or vectorised op in the process: call it first thing in a script's ``main``. Variables already in
    the environment are left as they are.
    """
    level = simd_level()
    if level == native_simd_level():
        return {}
    todo = {k: v for k, v in TORCH_ISA_ENV[level].items() if k not in os.environ}
    os.environ.update(todo)
    return todo


def has_vnni(flags: frozenset[str] | None = None) -> bool:
    """Integer dot-product instructions (AVX-512 VNNI or AVX-VNNI): exact, fast int8 GEMMs."""
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_vnni", "avx_vnni"} & flags)


def isa_fingerprint() -> str:
    """A short stable name for this CPU's instruction set, used to keep ``-march=native`` builds apart.

    A C++ extension compiled with ``-march=native`` on an AVX-512 machine dies with "illegal instruction" on an
    AVX2 one; a build cache keyed by this fingerprint can be shared by both.
    """
    digest = hashlib.sha1(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:8]
    return f"{platform.machine() or 'cpu'}-{native_simd_level()}-{digest}"
