"""Grade a reader's exercise with one command: ``python -m common.grade 4.1`` (``make grade EX=4.1``).

It runs the exercise's tests (``tests/chNN/test_exN_M_*.py``) against the reader's file in
``chNN_x/exercises/`` instead of the reference solution, and prints a one-line verdict:

* ``PASS`` (exit 0): every test ran and passed;
* ``FAIL`` (exit 1, or pytest's own code): a test failed or errored;
* ``INCOMPLETE`` (exit 3): nothing failed but some tests were skipped (a missing tool such as
  ``prometheus`` or ``.venv-vllm``), so the exercise is not proven; the line names the skipped tests'
  reasons, which say what to install.

Add ``--solution`` to run the same tests against the reference (what CI does).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from common.paths import REPO_ROOT

INCOMPLETE_EXIT = 3


def exercise_tests(exercise: str, root: Path = REPO_ROOT) -> list[Path]:
    """Test files for exercise ``N.M`` (e.g. ``4.1`` -> ``tests/ch04/test_ex4_1_*.py``)."""
    m = re.fullmatch(r"(\d+)\.(\d+)", exercise.strip())
    if not m:
        raise ValueError(f"exercise must look like 4.1, got {exercise!r}")
    chapter, number = int(m.group(1)), int(m.group(2))
    return sorted((root / "tests" / f"ch{chapter:02d}").glob(f"test_ex{chapter}_{number}_*.py"))


@dataclass
class Outcome:
    """What one pytest run of an exercise's tests did (read from its junit XML)."""

    returncode: int
    tests: int = 0
    failed: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # test id -> skip reason


def read_junit(path: Path, returncode: int) -> Outcome:
    """Count tests, failures/errors and skips (with reasons) in pytest's ``--junitxml`` file."""
    out = Outcome(returncode)
    if not path.is_file() or path.stat().st_size == 0:
        return out
    for case in ET.parse(path).getroot().iter("testcase"):
        out.tests += 1
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if case.find("failure") is not None or case.find("error") is not None:
            out.failed += 1
        skip = case.find("skipped")
        if skip is not None and skip.get("type") != "pytest.xfail":
            reason = skip.get("message", "") or "no reason given"
            out.skipped[name] = re.sub(r"^(Skipped: )", "", reason)
    return out


def verdict(outcome: Outcome) -> tuple[str, int, str]:
    """``(word, exit code, detail)``: PASS / FAIL / INCOMPLETE and what a skip needs to run."""
    if outcome.returncode != 0 or outcome.failed:
        code = outcome.returncode or 1
        detail = f"{outcome.failed} of {outcome.tests} tests failed" if outcome.failed else \
            f"pytest exited with code {code}"
        return "FAIL", code, detail
    if outcome.tests == 0:
        return "FAIL", 1, "no test ran"
    if outcome.skipped:
        reasons = "; ".join(sorted(set(outcome.skipped.values())))
        detail = (f"{len(outcome.skipped)} of {outcome.tests} tests skipped, so nothing proves the skipped "
                  f"parts ({reasons}); install what they name and grade again")
        return "INCOMPLETE", INCOMPLETE_EXIT, detail
    return "PASS", 0, f"{outcome.tests} tests passed"


def run_tests(files: list[Path], *, exercises: bool, extra: list[str] = (), cwd: Path = REPO_ROOT) -> Outcome:
    """Run pytest on ``files`` (``--exercises`` for the reader's stubs) and read what it did."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "grade.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-rs", f"--junitxml={xml}", *map(str, files), *extra]
        if exercises:
            cmd.insert(3, "--exercises")
        rc = subprocess.call(cmd, cwd=cwd)
        return read_junit(xml, rc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.grade", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exercise", help="exercise number, e.g. 4.1")
    parser.add_argument("--solution", action="store_true", help="grade the reference solution instead")
    args, extra = parser.parse_known_args(argv)
    try:
        files = exercise_tests(args.exercise)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not files:
        print(f"error: no tests found for exercise {args.exercise} (looked for tests/chNN/test_ex*_*.py)",
              file=sys.stderr)
        return 2
    word, code, detail = verdict(run_tests(files, exercises=not args.solution, extra=extra))
    who = "reference solution" if args.solution else "your exercise"
    print(f"exercise {args.exercise} ({who}): {word} - {detail}")
    return code


if __name__ == "__main__":
    sys.exit(main())
