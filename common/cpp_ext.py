"""C++ operators built at run time with ``torch.utils.cpp_extension.load`` (book 4.3.2, 6.2, 9.5).

Every kernel of the book is a real C++ file under the chapter that teaches it (``ch04_kvcache/csrc/``,
``ch06_quantization/csrc/``, ``ch09_advanced/csrc/``); helpers several kernels share are headers they
include (``common/csrc/simd.h``, always on the include path). :func:`load_extension` compiles a list of
sources once with g++ and caches the module under
``common.paths.cache_dir()/torch_extensions/<isa>/<name>/<digest>``; later calls only load it.

* ``<isa>`` is :func:`common.cpu.isa_fingerprint` and the SIMD level: the builds use ``-march=native``, so a
  cache made on an AVX-512 CPU must never be loaded on an AVX2 one (it would die with "illegal
  instruction"), and each CPU gets its own. ``LLMIC_SIMD=avx2`` or ``scalar`` builds the lower paths in their
  own folder (:data:`SIMD_CFLAGS`).
* ``<digest>`` (:func:`source_digest`) hashes every source, every header beside them or on the include
  path, the flags and the torch version, and is part of the module's name too: editing a kernel or a
  header builds a new module, and going back to an old version finds its build still there.

:func:`cpp_toolchain_problem` says, in one sentence, what is missing when a build cannot work here, so
callers can fall back to torch instead of failing with a compiler traceback.

    from common.cpp_ext import cpp_toolchain_problem, load_extension
    ext = load_extension("ch04_paged_decode", [CSRC / "paged_decode.cpp"], [CSRC])
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sysconfig
from collections.abc import Sequence
from pathlib import Path

from common.cpu import isa_fingerprint, simd_level
from common.paths import cache_dir

COMMON_CSRC = Path(__file__).resolve().parent / "csrc"  # simd.h: what several chapters' kernels share
HEADER_SUFFIXES = (".h", ".hpp")


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


def cflags() -> list[str]:
    """The compiler flags of every build at the current SIMD level.

    ``-fopenmp`` matters: ``at::parallel_for`` is a ``#pragma omp parallel`` inside an ATen header, so an
    extension compiled without it runs every "parallel" loop on one thread (measured here: a GEMV over
    the 113 MB LM head read 11.6 GB/s without it, 20.2 GB/s with it, the machine's read bandwidth). Only
    the compile flag is needed: the OpenMP runtime is the one torch already loaded (libtorch_cpu links it).
    """
    return ["-O3", "-march=native", *SIMD_CFLAGS[simd_level()], "-fopenmp"]


def extension_dir(folder: str) -> Path:
    """Where the extension ``folder`` is built on this CPU at this SIMD level (see the module doc)."""
    return cache_dir() / "torch_extensions" / f"{isa_fingerprint()}-{simd_level()}" / folder


def _include_dirs(sources: Sequence[Path], include_dirs: Sequence[Path]) -> list[Path]:
    dirs = [COMMON_CSRC, *include_dirs, *(s.parent for s in sources)]
    return list(dict.fromkeys(d.resolve() for d in dirs))


def source_digest(sources: Sequence[str | Path], include_dirs: Sequence[str | Path] = ()) -> str:
    """12 hex digits over the sources, the headers in their folders and on the include path, flags and torch."""
    import torch

    srcs = [Path(s).resolve() for s in sources]
    headers = sorted({h for d in _include_dirs(srcs, [Path(i) for i in include_dirs]) if d.is_dir()
                      for h in d.iterdir() if h.suffix in HEADER_SUFFIXES})
    h = hashlib.sha256(f"{torch.__version__} {' '.join(cflags())}".encode())
    for path in [*srcs, *headers]:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def load_extension(name: str, sources: Sequence[str | Path], include_dirs: Sequence[str | Path] = (),
                   verbose: bool = False):
    """Build (first call for these sources on this CPU) or load the extension; returns the module.

    ``sources`` are .cpp files, one of which holds the ``PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)`` block;
    ``include_dirs`` come after ``common/csrc`` and the sources' own folders on the include path.
    """
    from torch.utils.cpp_extension import load

    srcs = [Path(s).resolve() for s in sources]
    missing = [str(s) for s in srcs if not s.is_file()]
    if missing:
        raise FileNotFoundError(f"C++ sources of {name} are missing (is the package installed with its csrc/ "
                                f"files?): {', '.join(missing)}")
    digest = source_digest(srcs, include_dirs)
    build_dir = extension_dir(name) / digest
    build_dir.mkdir(parents=True, exist_ok=True)
    return load(name=f"{name}_{digest}", sources=[str(s) for s in srcs], extra_cflags=cflags(),
                extra_include_paths=[str(d) for d in _include_dirs(srcs, [Path(i) for i in include_dirs])],
                build_directory=str(build_dir), verbose=verbose)
