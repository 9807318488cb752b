"""C.5 ROI cases, the 1.5 advisor, and the tour's resilience."""

from __future__ import annotations

import pytest

from appendix_c_benchmarks import advisor, roi_cases, tour


def test_book_defaults_reproduce_the_books_stated_savings():
    cases = {c.case.split()[0]: c for c in roi_cases.all_cases({})}
    assert cases["C.5.2"].saving_pct == pytest.approx(60.0)
    assert cases["C.5.3"].saving_pct == pytest.approx(75.0)
    assert cases["C.5.4"].saving_pct == pytest.approx(40.0)
    assert cases["C.5.5"].monthly_saving == pytest.approx(15_000)


def test_measured_ratios_replace_the_defaults_and_say_so():
    results = {"ch05_scheduling": {"data": {"continuous_vs_static": 4.0, "engine_tok_s": 50.0}}}
    c = roi_cases.writing_assistant_scheduling(results)
    assert c.monthly_cost_after == pytest.approx(c.monthly_cost_before / 4.0)
    assert "measured here" in c.measured_basis
    slower = roi_cases.toast_support_agent(results)
    assert slower.inputs["tokens_per_s"] == 50.0 and "measured here" in slower.measured_basis


def test_roi_cli_rejects_unknown_inputs(capsys):
    with pytest.raises(SystemExit):
        roi_cases.main(["--case", "toast", "--set", "bogus=1"])
    assert "has inputs" in capsys.readouterr().err


def test_advisor_branches_follow_the_workload():
    small = advisor.recommend(advisor.Workload("chat", True, "strict", 1, True, False))
    text = " ".join(a.action for a in small)
    assert "prompt-lookup" in text and "4-bit" in text
    big = advisor.recommend(advisor.Workload("batch", False, "relaxed", 128, False, True))
    text = " ".join(a.action for a in big)
    assert "speculative" not in text and "maximise batch" in text and "torch.compile" in text
    assert [a.priority for a in big] == list(range(1, len(big) + 1))


def test_advisor_without_a_workload_asks_for_one(monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(SystemExit):
        advisor.main([])


def test_tour_reports_a_missing_chapter_and_survives_a_failing_one(monkeypatch):
    assert tour.run_chapter("chX", "ch04_kvcache.no_headline_here", smoke=True).status == "not built"

    class Boom:
        @staticmethod
        def headline(smoke=False):
            raise RuntimeError("kaputt")

    monkeypatch.setattr(tour.importlib, "import_module", lambda name: Boom)
    line = tour.run_chapter("chY", "whatever", smoke=True)
    assert line.status == "failed" and "kaputt" in line.text


def test_codegen_case_reads_the_measured_gptq_bytes_from_the_reference_report():
    """C.5.3 uses the row name compare writes; without a measurement it says so instead of passing off 0.25."""
    import json
    from pathlib import Path

    from appendix_c_benchmarks.roi_cases import code_generation_quantization

    ref = Path(__file__).resolve().parents[2] / "reports/reference/cpu-2c-amd-epyc/results.json"
    results = json.loads(ref.read_text())["benchmarks"]
    methods = results["ch06_quantization"]["data"]["methods"]
    measured = methods["int4 g64 GPTQ"]["weight_bytes"] / methods["bf16"]["weight_bytes"]
    case = code_generation_quantization(results)
    assert case.inputs["weight_bytes_ratio"] == measured and abs(measured - 0.25) > 0.1  # 0.64 on this model
    assert "measured here" in case.measured_basis
    assert "not measured" in code_generation_quantization({}).measured_basis
