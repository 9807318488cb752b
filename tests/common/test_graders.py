"""The graders themselves: each exercise's grader must FAIL the stub as shipped and a plausible wrong answer,
and PASS the reference solution and a different correct answer (tests/graders/README.md).

Everything runs in this process: the graders' check functions are called directly on each version of the
exercise (no pytest subprocess per version). Slow parts of a grader (vLLM, Prometheus) are left out here;
their cheap checks decide the verdict.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
VARIANTS = TESTS / "graders"
EXPECTED = {"stub": "fail", "wrong": "fail", "solution": "pass", "alternative": "pass"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # as the graders run (tests/conftest.py)


def grader(chapter: str, name: str):
    """The grader module ``tests/<chapter>/<name>.py``, imported as pytest's prepend mode imports it."""
    folder = str(TESTS / chapter)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


def load_file(path: Path):
    spec = importlib.util.spec_from_file_location(f"_grader_variant_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def version(package: str, module: str, number: str, which: str):
    if which in ("stub", "solution"):
        kind = "exercises" if which == "stub" else "solutions"
        return importlib.import_module(f"{package}.{kind}.{module}")
    return load_file(VARIANTS / f"ex{number.replace('.', '_')}_{which}.py")


def verdict(checks, mod) -> tuple[str, str]:
    """``("pass", "")`` when every check passes, else ``("fail" | "skip", why)``."""
    try:
        for check in checks:
            check(mod)
    except pytest.skip.Exception as exc:
        return "skip", str(exc)
    except Exception as exc:  # an AssertionError from a check, or whatever the version raised
        return "fail", f"{type(exc).__name__}: {str(exc)[:300]}"
    return "pass", ""


def assert_verdict(checks, package: str, module: str, number: str, which: str) -> None:
    got, why = verdict(checks, version(package, module, number, which))
    assert got == EXPECTED[which], f"exercise {number}'s grader gave {got} on the {which} version: {why}"


# --------------------------------------------------------------------------- 4.2


@pytest.fixture(scope="module")
def ch04_grader():
    return grader("ch04", "test_ex4_2_compare_cache")


@pytest.fixture(scope="module")
def wide_model(ch04_grader):
    return ch04_grader.make_wide_model()


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_4_2(which, ch04_grader, wide_model):
    g = ch04_grader
    checks = [lambda m: g.check_own_loop(m, wide_model, [9, 8, 7, 6, 5], 8),
              lambda m: g.check_comparison(m, wide_model)]
    assert_verdict(checks, "ch04_kvcache", "ex4_2_compare_cache", "4.2", which)


# --------------------------------------------------------------------------- 5.2


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_5_2(which):
    g = grader("ch05", "test_ex5_2_tune_scenarios")
    assert_verdict([g.check_best_config, g.check_two_scenarios], "ch05_scheduling", "ex5_2_tune_scenarios",
                   "5.2", which)


# --------------------------------------------------------------------------- 6.2


@pytest.fixture(scope="module")
def ch06_setup(tmp_path_factory):
    import torch

    tiny = load_file(TESTS / "conftest.py").TINY_LLAMA  # "conftest" in sys.modules may be another folder's
    g = grader("ch06", "test_ex6_2_layerwise_quantize")
    folder = g.make_model_folder(dict(tiny), tmp_path_factory.mktemp("ex6_2") / "tiny-4-layers")
    calib = torch.randint(3, 256, (4, 32), generator=torch.Generator().manual_seed(0))
    return g, folder, calib


@pytest.mark.parametrize("which", list(EXPECTED))
def test_grader_6_2(which, ch06_setup, tmp_path):
    g, folder, calib = ch06_setup
    checks = [g.check_memory_plan, lambda m: g.check_streamed(m, folder, tmp_path / "q", calib)]
    assert_verdict(checks, "ch06_quantization", "ex6_2_layerwise_quantize", "6.2", which)
