"""Chapter 1's economics: arithmetic, every key it reads exists in the committed report, and a missing key
is "not measured" (never a claimed figure)."""

from __future__ import annotations

import json

import pytest

from ch01_economics import cost
from ch01_economics.measured import Report, figure, load_report, reference_reports
from ch01_economics.mistakes import MISTAKES, priced_mistakes
from ch01_economics.multiply import cost_decline_pct, factor_for_decline, factors, stack
from ch01_economics.sources import ASSUMPTION, CLAIM, PUBLISHED, SOURCES
from ch01_economics.structure import (
    BASELINE_KEY,
    THROUGHPUT_KEYS,
    barriers,
    cost_per_million_tokens,
    cost_rows,
    default_price,
)
from common.report import parse_json_line


def all_keys(report: Report) -> list[str]:
    keys = [k for _, k in THROUGHPUT_KEYS] + [BASELINE_KEY]
    keys += [k for b in barriers(report) for k in b.keys]
    keys += [k for f in factors(report) for k in f.keys] + [stack(report).end_to_end.key]
    keys += [k for m in MISTAKES for k in m.keys]
    return keys


def test_cost_per_million_tokens_arithmetic():
    assert cost_per_million_tokens(100.0, 3.6) == pytest.approx(10.0)  # 360,000 tokens/h for $3.60
    with pytest.raises(ValueError):
        cost_per_million_tokens(0.0, 1.0)
    assert cost_decline_pct(4.0) == pytest.approx(75.0)
    assert factor_for_decline(86.0) == pytest.approx(1 / 0.14)


def test_every_key_read_is_in_the_committed_reference_report():
    assert reference_reports(), "no committed reference report"
    report = load_report()
    missing = [k for k in all_keys(report) if not figure(report, k).measured]
    assert missing == [], f"renamed or dropped report keys: {missing}"


def test_missing_keys_say_not_measured_and_never_fall_back(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"hardware": {"cpu": "X", "cores": 1}, "benchmarks": {
        "ch05_scheduling": {"status": "failed", "data": {"engine_tok_s": 123.0}},
        "ch04_kvcache": {"status": "ok", "data": {"speedup_kv_cache": 2.0}}}}))
    report = load_report(path)
    assert figure(report, "ch05_scheduling.engine_tok_s").note.startswith("not measured")  # failed benchmark
    assert figure(report, "ch04_kvcache.naive_kv_utilization").note.startswith("not measured")
    assert figure(report, "ch04_kvcache.speedup_kv_cache").value == 2.0
    assert all(r.cost_per_1m is None for r in cost_rows(report, default_price(report), 1e6))
    assert all(m.consequence.startswith("not measured") for m in priced_mistakes(report))
    st = stack(report)
    assert st.product == pytest.approx(2.0) and "ch09_advanced.engine_kernel_speedup" in st.missing


def test_list_member_keys_pick_by_field():
    report = Report(None, {}, {"b": {"status": "ok", "data": {"points": [{"batch": 1, "t": 3.0}, {"batch": 4, "t": 9.0}]}}})
    assert figure(report, "b.points[batch=4].t").value == 9.0
    assert not figure(report, "b.points[batch=8].t").measured


def test_price_follows_the_measuring_machine():
    assert default_price(Report(None, {"gpu": "H100"}, {})).dollars_per_hour == 2.0
    assert default_price(Report(None, {"cpu": "x"}, {})).dollars_per_hour == 0.10
    assert default_price(Report(None, {}, {}), 0.5).source.startswith("given")


def test_sources_are_labelled_and_unique():
    ids = [s.id for s in SOURCES]
    assert len(ids) == len(set(ids))
    assert all(s.kind in (CLAIM, PUBLISHED, ASSUMPTION) and s.source for s in SOURCES)


def test_cli_prints_tables_and_one_json_line(capsys):
    assert cost.main(["--monthly-tokens", "1e6"]) == 0
    out = capsys.readouterr().out
    assert "1.4.1 five common mistakes" in out and "SOURCES" in out
    payload = parse_json_line(out)
    assert payload["not_measured"] == [] and payload["engine_vs_hf"] > 0
    assert len(payload["mistakes"]) == 5
    with pytest.raises(SystemExit) as exc:
        cost.main(["--help"])
    assert exc.value.code == 0
