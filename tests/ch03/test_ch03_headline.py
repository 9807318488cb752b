"""The tour line of chapter 3: every number in the text comes from the figures measured in the call."""

from __future__ import annotations

from ch03_env.headline import headline


def test_smoke_headline_reports_the_doctor_verdict_it_measured():
    h = headline(smoke=True)
    f = h.figures
    assert h.chapter == "ch03"
    assert f["doctor_fail"] == 0
    assert f"{f['doctor_ok']} OK, {f['doctor_warn']} WARN, {f['doctor_fail']} FAIL" in h.text
    assert (f["vllm"] or "not installed") in h.text
