"""common.cli and common.grade: shared flags, friendly errors, one-command grading."""

from __future__ import annotations

import argparse

import pytest

from common import cli, grade
from common.device import DeviceError


def test_common_flags_have_documented_defaults():
    p = cli.make_parser("x", "doc")
    cli.add_common_args(p)
    a = p.parse_args([])
    assert (a.smoke, a.json, a.device, a.dtype, a.seed, a.model, a.load_format) == (
        False, False, "auto", "auto", 0, "smollm2-135m", "auto")
    assert "--load-format" in p.format_help()


def test_friendly_errors_print_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exc, cli.friendly_errors():
        raise DeviceError("no GPU here; use --device cpu.")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: no GPU here; use --device cpu."


def test_positive_int_rejects_zero_and_words():
    assert cli.positive_int("3") == 3
    for bad in ("0", "-1", "two"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.positive_int(bad)


def test_seed_everything_makes_torch_repeatable():
    import torch

    cli.seed_everything(7)
    a = torch.rand(3)
    cli.seed_everything(7)
    assert torch.equal(a, torch.rand(3))


def test_grade_finds_tests_by_exercise_number(tmp_path):
    (tmp_path / "tests" / "ch04").mkdir(parents=True)
    (tmp_path / "tests" / "ch04" / "test_ex4_1_simple_kv_cache.py").write_text("")
    (tmp_path / "tests" / "ch04" / "test_ex4_2_compare.py").write_text("")
    assert [p.name for p in grade.exercise_tests("4.1", tmp_path)] == ["test_ex4_1_simple_kv_cache.py"]
    with pytest.raises(ValueError, match="4.1"):
        grade.exercise_tests("four", tmp_path)


def test_grade_reports_bad_input_clearly(capsys):
    assert grade.main(["x.y"]) == 2
    assert grade.main(["99.9"]) == 2
    assert "no tests found" in capsys.readouterr().err


def test_headline_main_prints_the_sentence_then_its_json_line(capsys):
    from common.report import Headline, parse_json_line

    calls = []

    def fake(smoke):
        calls.append(smoke)
        return Headline("chX", "measured 2.0x", {"ratio": 2.0})

    assert cli.headline_main("x", "doc", fake, "tiny", ["--smoke"]) == 0
    out = capsys.readouterr().out
    assert calls == [True] and out.splitlines()[0] == "measured 2.0x"
    assert parse_json_line(out) == {"chapter": "chX", "ratio": 2.0}


def test_figures_main_prints_the_visible_figures_then_every_figure_as_json(capsys):
    from common.report import parse_json_line

    calls = []

    def fake(smoke):
        calls.append(smoke)
        return {"speedup": 1.5, "hardware": {"cpu": "x"}, "notes": ["n1"]}

    assert cli.figures_main("x", "doc", fake, "T", ["--smoke"], hide=("hardware", "notes"),
                            after_table=lambda out: print(f"note {out['notes'][0]}")) == 0
    out = capsys.readouterr().out
    assert calls == [True] and "speedup" in out and "cpu" not in out.split("{")[0] and "note n1" in out
    assert parse_json_line(out) == {"speedup": 1.5, "hardware": {"cpu": "x"}, "notes": ["n1"]}
    assert cli.figures_main("x", "doc", fake, "T", ["--json"]) == 0
    assert capsys.readouterr().out.count("\n") == 1  # --json: the JSON line alone


def test_grade_verdicts_pass_fail_and_incomplete_on_skips():
    assert grade.verdict(grade.Outcome(0, tests=4))[:2] == ("PASS", 0)
    assert grade.verdict(grade.Outcome(1, tests=4, failed=1))[:2] == ("FAIL", 1)
    assert grade.verdict(grade.Outcome(0, tests=0))[:2] == ("FAIL", 1)  # nothing ran: not a pass
    skipped = {"t::a": "no prometheus binary (apt-get install prometheus)", "t::b": "no prometheus binary "
               "(apt-get install prometheus)"}
    word, code, detail = grade.verdict(grade.Outcome(0, tests=4, skipped=skipped))
    assert (word, code) == ("INCOMPLETE", grade.INCOMPLETE_EXIT) == ("INCOMPLETE", 3)
    assert "2 of 4 tests skipped" in detail and detail.count("apt-get install prometheus") == 1
    # a failure outranks a skip
    assert grade.verdict(grade.Outcome(1, tests=4, failed=1, skipped=skipped))[0] == "FAIL"


def test_grade_reads_skips_from_a_real_pytest_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # hypothesis/schemathesis plugins cost ~2 s
    (tmp_path / "test_x.py").write_text(
        "import pytest\n"
        "@pytest.mark.skip(reason='no prometheus binary (apt-get install prometheus)')\n"
        "def test_needs_prometheus(): pass\n"
        "@pytest.mark.xfail(reason='known')\n"
        "def test_xfail(): assert 0\n"
        "def test_ok(): pass\n")
    out = grade.run_tests([tmp_path / "test_x.py"], exercises=False, extra=["-p", "no:cacheprovider"],
                          cwd=tmp_path)
    assert (out.returncode, out.tests, out.failed) == (0, 3, 0)
    assert list(out.skipped.values()) == ["no prometheus binary (apt-get install prometheus)"]  # not the xfail
    assert grade.verdict(out)[0] == "INCOMPLETE"


def test_grade_main_prints_incomplete_and_exits_3_when_a_test_skipped(monkeypatch, capsys):
    seen = {}

    def fake_run(files, *, exercises, extra=()):
        seen.update(files=[f.name for f in files], exercises=exercises)
        return grade.Outcome(0, tests=4, skipped={"x::a": "no prometheus binary (apt-get install prometheus)"})

    monkeypatch.setattr(grade, "run_tests", fake_run)
    assert grade.main(["8.2"]) == 3
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("exercise 8.2 (your exercise): INCOMPLETE - 1 of 4 tests skipped")
    assert "apt-get install prometheus" in line
    assert seen == {"files": ["test_ex8_2_monitoring.py"], "exercises": True}
