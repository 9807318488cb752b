"""Every C++ kernel lives in a real .cpp/.h file under the chapter that teaches it (ARCHITECTURE.md §4).

No Python file holds C++ in a string any more; the kernels' quoted includes resolve in their own ``csrc/``
folder or in ``common/csrc`` (book order for C++ too); the files are package data, so a non-editable install
ships them; and ``common.cpp_ext`` names a build after a digest of every source and header, so editing one
rebuilds.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ["common", "ch02_gpu", "ch03_env", "ch04_kvcache", "ch05_scheduling", "ch06_quantization",
            "ch07_speculative", "ch08_production", "ch09_advanced", "appendix_c_benchmarks"]
INLINE_MARKERS = ("CPP_" + "SOURCE", "load_" + "inline", "#include " + "<torch/")  # split so this file passes


def python_files() -> list[Path]:
    return [f for pkg in [*PACKAGES, "tests"] for f in (REPO / pkg).rglob("*.py")]


def csrc_files() -> list[Path]:
    return sorted(f for pkg in PACKAGES for f in (REPO / pkg).glob("csrc/*") if f.suffix in (".cpp", ".h"))


def test_no_cpp_source_string_is_left_in_python():
    bad = [f"{f.relative_to(REPO)}: {m}" for f in python_files() for m in INLINE_MARKERS
           if m in f.read_text(encoding="utf-8")]
    assert not bad, bad


def test_kernels_include_only_their_own_folder_and_common():
    assert csrc_files(), "no csrc/ folders found"
    bad = []
    for f in csrc_files():
        for name in re.findall(r'^#include "([^"]+)"', f.read_text(), flags=re.M):
            if not ((f.parent / name).is_file() or (REPO / "common" / "csrc" / name).is_file()):
                bad.append(f"{f.relative_to(REPO)} includes {name}")
    assert not bad, bad


def test_the_kernel_files_are_package_data():
    data = (REPO / "pyproject.toml").read_text().split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert '"csrc/*.cpp"' in data and '"csrc/*.h"' in data, data


def test_a_changed_header_changes_the_build_name(tmp_path):
    from common.cpp_ext import source_digest

    (tmp_path / "k.cpp").write_text('#include "k.h"\n')
    (tmp_path / "k.h").write_text("constexpr int A = 1;\n")
    before = source_digest([tmp_path / "k.cpp"])
    (tmp_path / "k.h").write_text("constexpr int A = 2;\n")
    assert source_digest([tmp_path / "k.cpp"]) != before
