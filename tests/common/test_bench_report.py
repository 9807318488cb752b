"""common.bench and common.report: timers, percentiles, stamps, tables and the final JSON line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from common import bench, report


def test_percentile_matches_numpy():
    xs = [0.3, 0.1, 0.9, 0.5, 0.7, 0.2]
    for q in (0, 50, 90, 99, 100):
        assert bench.percentile(xs, q) == pytest.approx(np.percentile(xs, q))
    assert math.isnan(bench.percentile([], 50))
    with pytest.raises(ValueError):
        bench.percentile(xs, 101)


def test_summarize_keys():
    s = bench.summarize([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["p50"] == 2.0 and set(s) == {"mean", "p50", "p90", "p99"}


def test_time_fn_runs_warmup_then_repeats():
    calls = []
    t = bench.time_fn(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and len(t.samples) == 4
    assert t.best <= t.median <= max(t.samples)
    with pytest.raises(ValueError):
        bench.time_fn(lambda: None, repeats=0)


def test_hardware_stamp_describes_the_machine():
    s = bench.stamp_dict(dtype="fp32")
    assert s["cores"] >= 1 and s["torch"] and s["dtype"] == "fp32"
    short = bench.hardware_stamp().short()
    assert short and "/" not in short and " " not in short


def test_read_bandwidth_is_plausible():
    bw = bench.measure_read_bandwidth(megabytes=64, repeats=2)
    assert 1e8 < bw < 1e13  # between 0.1 GB/s and 10 TB/s: a real measurement, not a constant


def test_mbu_is_bytes_per_second_over_bandwidth():
    assert bench.mbu(500e6, 20, 32e9) == pytest.approx(0.3125)
    with pytest.raises(ValueError):
        bench.mbu(1, 1, 0)


def test_table_aligns_numbers_right_and_text_left():
    text = report.format_table([{"name": "a", "tok/s": 1.5}, {"name": "long", "tok/s": 123.0}])
    lines = text.splitlines()
    assert lines[0].startswith("name") and set(lines[1]) <= {"-", " "}
    assert lines[2].endswith("1.5") and lines[3].endswith("123")
    assert len({len(line) for line in lines[1:]}) == 1


def test_json_line_round_trips_and_nan_becomes_null(capsys):
    report.emit_json({"a": 1.5, "b": float("nan"), "nested": {"t": (1, 2)}})
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert report.parse_json_line("table\n" + out) == {"a": 1.5, "b": None, "nested": {"t": [1, 2]}}
    with pytest.raises(ValueError):
        report.parse_json_line("no json here")


def test_save_plot_writes_a_png(tmp_path):
    p = report.save_plot(tmp_path / "x.png", {"s": ([1, 2, 3], [1, 4, 9])}, title="t", hlines={"roof": 5})
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    b = report.save_plot(tmp_path / "b.png", {"a": ([0], [1.0]), "b": ([0], [2.0])}, kind="bar")
    assert b.stat().st_size > 1000


def test_headline_is_a_plain_message():
    h = report.Headline("ch04", "x", {"k": 1})
    assert json.loads(report.json_line({"h": h.figures}))["h"]["k"] == 1


def test_interleaved_alternates_the_order_each_round():
    assert list(bench.interleaved(("a", "b", "c"), 3)) == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]
    assert list(bench.interleaved(["x"], 2)) == ["x", "x"]
    assert list(bench.interleaved(("a", "b"), 0)) == []
