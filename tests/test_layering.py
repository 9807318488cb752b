"""ARCHITECTURE.md §2: book order is dependency order. common imports no chapter; a chapter imports only
common and earlier chapters. Checked by parsing every import in the tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ORDER = {
    "common": 0, "ch01_economics": 1, "ch02_gpu": 2, "ch03_env": 3, "ch04_kvcache": 4, "ch05_scheduling": 5,
    "ch06_quantization": 6, "ch07_speculative": 7, "ch08_production": 8, "ch09_advanced": 9,
    "appendix_a": 97, "appendix_b": 98, "appendix_c_benchmarks": 99,
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value.split(".")[0])
    return names


def violations(root: Path = REPO) -> list[str]:
    bad = []
    for pkg, rank in ORDER.items():
        for f in (root / pkg).rglob("*.py"):
            for top in imported_top_levels(f):
                if top in ORDER and top != pkg and ORDER[top] > rank:
                    bad.append(f"{f.relative_to(root)} imports {top}")
    return sorted(bad)


def test_every_package_imports_only_common_and_earlier_chapters():
    assert violations() == []


def test_checker_catches_a_later_chapter_import(tmp_path):
    (tmp_path / "ch04_kvcache").mkdir()
    (tmp_path / "ch04_kvcache" / "bad.py").write_text("from ch05_scheduling.engine import Engine\n")
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "bad.py").write_text("import ch02_gpu\n")
    found = violations(tmp_path)
    assert found == ["ch04_kvcache/bad.py imports ch05_scheduling", "common/bad.py imports ch02_gpu"]


def test_package_list_matches_the_folders():
    chapters = {p.name for p in REPO.iterdir() if p.is_dir() and re.match(r"(ch\d\d_|appendix_)", p.name)}
    assert chapters == set(ORDER) - {"common"}


def test_test_file_names_are_unique_across_chapters():
    # tests/ has no __init__.py files, so pytest imports test modules by basename: two chapters with a
    # test_headline.py would collide. Prefix such files with the chapter (test_ch03_headline.py).
    names = [p.name for p in (REPO / "tests").rglob("*.py") if p.name != "conftest.py"]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert dupes == [], f"rename these test files to be unique: {dupes}"
