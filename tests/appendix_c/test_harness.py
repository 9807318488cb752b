"""Appendix C harness: runs benchmarks in subprocesses, survives failures, writes every section."""

from __future__ import annotations

import json

from appendix_c_benchmarks import report as rep
from appendix_c_benchmarks.registry import BENCHMARKS, BenchSpec, by_key
from appendix_c_benchmarks.runner import BenchResult, run_benchmark
from common.bench import stamp_dict


def test_registry_covers_every_benchmarked_chapter():
    chapters = {b.chapter for b in BENCHMARKS}
    assert chapters == {"ch02", "ch04", "ch05", "ch06", "ch07", "ch08", "ch09"}
    assert len(by_key()) == len(BENCHMARKS)


def test_a_real_module_is_run_and_its_json_line_parsed(tmp_path):
    spec = BenchSpec("advisor", "ch01", "appendix_c_benchmarks.advisor", ("C.5",),
                     ("--workload", "batch", "--memory-bound", "no", "--latency-slo", "relaxed"))
    r = run_benchmark(spec, smoke=False, log_dir=tmp_path)
    assert r.status == "ok", r.error
    assert r.data["workload"]["workload"] == "batch"
    assert (tmp_path / "advisor.log").read_text()


def test_a_failing_benchmark_becomes_a_row_not_an_exception():
    spec = BenchSpec("bad", "ch01", "appendix_c_benchmarks.advisor", ("C.5",), ("--typical-batch", "x"))
    r = run_benchmark(spec, smoke=False)
    assert r.status == "failed" and "exit 2" in r.error


def test_a_missing_module_is_reported_as_missing():
    r = run_benchmark(BenchSpec("nope", "ch01", "ch04_kvcache.no_such_bench", ("C.3",)), smoke=True)
    assert r.status == "missing"


def test_report_has_every_section_and_charts_measured_ratios(tmp_path):
    results = {
        "ch04_kvcache": BenchResult("ch04_kvcache", "ok", 1.0, {"speedup_kv_cache": 5.5, "tokens_identical": True}),
        "ch05_scheduling": BenchResult("ch05_scheduling", "failed", 2.0, error="exit 1: boom"),
    }
    path = rep.write_report(tmp_path, results, stamp_dict(), smoke=True)
    text = path.read_text()
    for sec, _ in rep.SECTIONS:
        assert f"## {sec} " in text
    assert "KV cache vs none" in text and "5.50" in text
    assert "failed: exit 1: boom" in text
    assert (tmp_path / "ratios.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["benchmarks"]["ch04_kvcache"]["data"]["speedup_kv_cache"] == 5.5


def test_scalar_figures_flatten_nested_results_without_the_stamp():
    rows = dict(rep.scalar_figures({"a": 1, "hardware": {"cpu": "x"}, "m": {"int8": {"ppl": 9.1}}}))
    assert rows == {"a": 1, "m.int8.ppl": 9.1}


def test_readme_results_section_matches_the_committed_reference_reports():
    from appendix_c_benchmarks import readme_results

    assert readme_results.main(["--check"]) == 0


def test_readme_results_section_is_regenerated_between_markers(tmp_path):
    from appendix_c_benchmarks import readme_results as rr

    text = f"intro\n\n{rr.BEGIN}\nold\n{rr.END}\n\nafter\n"
    new = rr.updated_readme(text, f"{rr.BEGIN}\nnew\n{rr.END}")
    assert new == f"intro\n\n{rr.BEGIN}\nnew\n{rr.END}\n\nafter\n"


def test_only_refreshes_one_benchmark_and_keeps_the_rest_of_the_report(tmp_path):
    from appendix_c_benchmarks.__main__ import main

    kept = BenchResult("ch04_kvcache", "ok", 12.0, {"speedup": 5.0})
    rep.write_report(tmp_path, {"ch04_kvcache": kept}, stamp_dict(), smoke=True)
    main(["--smoke", "--only", "ch02_vram", "--out", str(tmp_path)])
    benches = json.loads((tmp_path / "results.json").read_text())["benchmarks"]
    assert list(benches) == ["ch02_vram", "ch04_kvcache"]  # registry order
    assert benches["ch04_kvcache"]["data"] == {"speedup": 5.0}
    assert benches["ch02_vram"]["status"] == "ok" and benches["ch02_vram"]["data"]["total_bytes"] > 0
    main(["--only", "ch02_vram", "--out", str(tmp_path)])  # a full run does not mix with a smoke report
    assert list(json.loads((tmp_path / "results.json").read_text())["benchmarks"]) == ["ch02_vram"]


def test_report_copies_benchmark_plots_and_links_them_relatively(tmp_path):
    from common.report import save_plot

    src = save_plot(tmp_path / "elsewhere" / "fig.png", {"a": ([0, 1], [1, 2])}, title="t")
    out = tmp_path / "report"
    results = {"ch06_quantization": BenchResult("ch06_quantization", "ok", 1.0, {"plot": str(src.resolve())})}
    rep.write_report(out, results, stamp_dict(), smoke=True)
    saved = json.loads((out / "results.json").read_text())["benchmarks"]["ch06_quantization"]["data"]["plot"]
    assert saved == "plots/ch06_quantization_fig.png" and (out / saved).is_file()
    assert f"![plot]({saved})" in (out / "report.md").read_text()
