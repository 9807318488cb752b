"""Grade a reader's exercise with one command: ``python -m common.grade 4.1`` (``make grade EX=4.1``).

It runs the exercise's tests (``tests/chNN/test_exN_M_*.py``) against the reader's file in
``chNN_x/exercises/`` instead of the reference solution, and prints a one-line verdict. Add
``--solution`` to run the same tests against the reference (what CI does).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from common.paths import REPO_ROOT


def exercise_tests(exercise: str, root: Path = REPO_ROOT) -> list[Path]:
    """Test files for exercise ``N.M`` (e.g. ``4.1`` -> ``tests/ch04/test_ex4_1_*.py``)."""
    m = re.fullmatch(r"(\d+)\.(\d+)", exercise.strip())
    if not m:
        raise ValueError(f"exercise must look like 4.1, got {exercise!r}")
    chapter, number = int(m.group(1)), int(m.group(2))
    return sorted((root / "tests" / f"ch{chapter:02d}").glob(f"test_ex{chapter}_{number}_*.py"))


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
    cmd = [sys.executable, "-m", "pytest", "-q", *map(str, files), *extra]
    if not args.solution:
        cmd.insert(3, "--exercises")
    rc = subprocess.call(cmd, cwd=REPO_ROOT)
    who = "reference solution" if args.solution else "your exercise"
    verdict = "PASS" if rc == 0 else "FAIL"
    print(f"exercise {args.exercise} ({who}): {verdict}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
