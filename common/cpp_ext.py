"""C++ operators built at run time with ``torch.utils.cpp_extension.load_inline`` (book 4.3.2, 9.5).

Shared by chapter 4 (the in-place paged decode operator) and chapter 9 (the fused RMSNorm and how such
operators are built and measured). :func:`load_cpp` compiles once with g++ and caches the module under
``common.paths.cache_dir()/torch_extensions/<isa>/<folder>``; later calls only load it. ``<isa>`` is
:func:`common.cpu.isa_fingerprint` and the SIMD level: the builds use ``-march=native``, so a cache made on an
AVX-512 CPU must never be loaded on an AVX2 one (it would die with "illegal instruction"), and each CPU gets its
own. ``LLMIC_SIMD=avx2`` or ``scalar`` builds the lower paths in their own folder (:data:`SIMD_CFLAGS`).
:func:`cpp_toolchain_problem` says, in one sentence, what is missing when a build cannot work here, so
callers can fall back to torch instead of failing with a compiler traceback.

    from common.cpp_ext import cpp_toolchain_problem, load_cpp
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

from common.cpu import isa_fingerprint, simd_level
from common.paths import cache_dir


def cpp_toolchain_problem() -> str | None:
    """None when a C++ extension can be built here, else one sentence saying what to install."""
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler}) on PATH: install g++ (apt install g++)"
    include = sysconfig.get_paths().get("include")
    if not include or not (Path(include) / "Python.h").is_file():
        return "the Python development headers (Python.h) are missing: install python3-dev"
    try:
        from torch.utils.cpp_extension import is_ninja_available
    except ImportError:  # pragma: no cover - every torch build ships cpp_extension
        return "this torch build has no torch.utils.cpp_extension"
    if not is_ninja_available():
        return "ninja is missing: pip install ninja"
    return None


# ``-march=native`` turns on every instruction the CPU has; these take some back when ``LLMIC_SIMD`` caps the
# level (common.cpu), so the kernels' ``#ifdef __AVX2__`` fallbacks are compiled, and tested, on any machine.
SIMD_CFLAGS = {"avx512": [], "avx2": ["-mno-avx512f"], "scalar": ["-mno-avx2", "-mno-fma", "-mno-avx512f"]}


def extension_dir(folder: str) -> Path:
    """Where the extension ``folder`` is built on this CPU at this SIMD level (see the module doc)."""
    return cache_dir() / "torch_extensions" / f"{isa_fingerprint()}-{simd_level()}" / folder


def load_cpp(name: str, source: str, functions: list[str], folder: str, verbose: bool = False):
    """``load_inline`` with the book's flags, built once per CPU under ``cache_dir()/torch_extensions/<isa>/<folder>``.

    ``-fopenmp`` matters: ``at::parallel_for`` is a ``#pragma omp parallel`` inside an ATen header, so an
    extension compiled without it runs every "parallel" loop on one thread (measured here: a GEMV over
    the 113 MB LM head read 11.6 GB/s without it, 20.2 GB/s with it, the machine's read bandwidth). Only
    the compile flag is needed: the OpenMP runtime is the one torch already loaded (libtorch_cpu links it).
    """
    from torch.utils.cpp_extension import load_inline

    build_dir = extension_dir(folder)
    build_dir.mkdir(parents=True, exist_ok=True)
    return load_inline(name=name, cpp_sources=source, functions=functions,
                       extra_cflags=["-O3", "-march=native", *SIMD_CFLAGS[simd_level()], "-fopenmp"], build_directory=str(build_dir),
                       verbose=verbose)
