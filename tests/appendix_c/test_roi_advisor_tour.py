"""C.5 ROI cases, the 1.5 advisor, and the tour's resilience."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appendix_c_benchmarks import advisor, roi_cases, tour

REFERENCE = Path(__file__).resolve().parents[2] / "reports/reference/cpu-2c-amd-epyc/results.json"


def _ok(**benches) -> dict:
    return {name: {"status": "ok", "data": data} for name, data in benches.items()}


def test_without_measurements_every_case_says_not_measured_instead_of_passing_off_the_claim():
    cases = {c.case.split()[0]: c for c in roi_cases.all_cases({})}
    for name in ("C.5.1", "C.5.2", "C.5.3", "C.5.5"):
        assert cases[name].measured_basis.startswith("not measured"), name
    assert cases["C.5.2"].saving_pct == 0.0 and cases["C.5.5"].saving_pct == 0.0  # no claim as a result
    assert cases["C.5.3"].inputs["weight_bytes_ratio"] == 0.25  # 4 bits / 16 bits: arithmetic, labelled
    # C.5.4 derives its share from Mixtral's config (a count, no benchmark needed), not the book's 40%
    assert cases["C.5.4"].inputs["active_fraction"] == pytest.approx(12.88 / 46.70, abs=0.01)


def test_measured_ratios_replace_the_defaults_and_say_so():
    results = _ok(ch05_rate_slo={"continuous_vs_static_rate_at_slo": 4.0, "ttft_p90_reduction_pct": 70.0},
                  ch05_scheduling={"engine_tok_s": 50.0, "hardware": {"gpu": None}},
                  ch08_autoscale={"peak_provisioned_idle_share": 0.4})
    c = roi_cases.writing_assistant_scheduling(results)
    assert c.monthly_cost_after == pytest.approx(c.monthly_cost_before / 4.0)
    assert "measured here" in c.measured_basis and "-70%" in c.measured_effect
    toast = roi_cases.toast_support_agent(results)
    assert toast.inputs["tokens_per_s"] == 50.0 and "measured here" in toast.measured_basis
    # a CPU's throughput is priced at a CPU's rate, never at a GPU's
    assert toast.inputs["machine_dollars_per_hour"] == roi_cases.ASSUMED_CPU_DOLLARS_PER_HOUR
    assert roi_cases.saas_cost_monitoring(results).saving_pct == pytest.approx(40.0)


def test_a_benchmark_that_ran_without_the_key_a_case_reads_is_an_error_not_a_fallback():
    with pytest.raises(roi_cases.MissingMeasurement, match="continuous_vs_static_rate_at_slo"):
        roi_cases.writing_assistant_scheduling(_ok(ch05_rate_slo={"static_rate_at_slo": 1.0}))
    with pytest.raises(roi_cases.MissingMeasurement, match="int4 g64 GPTQ"):
        roi_cases.code_generation_quantization(_ok(ch06_quantization={"methods": {"bf16": {"weight_bytes": 1}}}))
    failed = {"ch05_rate_slo": {"status": "failed", "data": {}}}  # a failed run is "not measured", not an error
    assert roi_cases.writing_assistant_scheduling(failed).measured_basis.startswith("not measured")


def test_every_measured_key_the_cases_read_is_one_the_benchmarks_write():
    """The reference report holds every figure the cases read (a renamed key fails here)."""
    results = json.loads(REFERENCE.read_text())["benchmarks"]
    assert roi_cases.missing_measurements(results) == []
    cases = roi_cases.all_cases(results)
    assert not any(c.measured_basis.startswith("not measured") for c in cases)


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
    from appendix_c_benchmarks.roi_cases import code_generation_quantization

    results = json.loads(REFERENCE.read_text())["benchmarks"]
    methods = results["ch06_quantization"]["data"]["methods"]
    measured = methods["int4 g64 GPTQ"]["weight_bytes"] / methods["bf16"]["weight_bytes"]
    case = code_generation_quantization(results)
    assert case.inputs["weight_bytes_ratio"] == measured and abs(measured - 0.25) > 0.1  # 0.64 on this model
    assert "measured here" in case.measured_basis
    assert "not measured" in code_generation_quantization({}).measured_basis
