"""The chapter benchmark's contract: one JSON line with the keys the issue asks for (smoke sizes)."""

from __future__ import annotations

import pytest

from common.report import parse_json_line


@pytest.mark.slow
def test_bench_smoke_reports_every_method(capsys):
    from ch07_speculative import bench

    assert bench.main(["--smoke", "--json", "--no-hf"]) == 0
    out = parse_json_line(capsys.readouterr().out)
    for key in ("tokens_identical", "distribution_test_p", "speedup_prompt_lookup", "speedup_draft",
                "speedup_lookahead", "hardware"):
        assert key in out
    assert out["tokens_identical"] is True
    assert out["distribution_test_p"] > 0.01
    for m in out["methods"].values():
        assert 0.0 <= m["acceptance_rate"] <= 1.0
        assert m["tokens_per_target_step"] >= 1.0 and m["formula_tokens_per_step"] >= 1.0


def test_help_works_for_every_module():
    import importlib

    for name in ("theory", "speculative", "drafts", "prompt_lookup", "lookahead", "bench", "sweeps", "distill"):
        mod = importlib.import_module(f"ch07_speculative.{name}")
        with pytest.raises(SystemExit) as exc:
            mod.main(["--help"])
        assert exc.value.code == 0


@pytest.mark.slow
def test_headline_smoke_is_measured_and_exact():
    from ch07_speculative.headline import headline

    h = headline(smoke=True)
    assert h.chapter == "ch07" and h.figures["identical"] is True
    assert h.figures["tokens_per_target_step"] > 1.0
    assert f"{h.figures['tokens_per_target_step']:.1f}" in h.text
