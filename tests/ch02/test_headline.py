"""Chapter 2's headline for the guided tour: every number in the text comes from the figures."""

from __future__ import annotations

from ch02_gpu.headline import headline


def test_smoke_headline_states_the_breakdown_and_the_measured_bound():
    h = headline(smoke=True)
    assert h.chapter == "ch02"
    assert h.figures["weights_bytes"] == 538_060_032 and h.figures["kv_bytes_per_token"] == 46_080
    assert h.figures["bandwidth_bytes_per_s"] > 1e8
    assert f"{h.figures['weights_bytes'] / 1e6:.0f} MB" in h.text
    assert f"{h.figures['bound_tokens_per_s']:.0f} tok/s" in h.text
