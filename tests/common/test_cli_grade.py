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
