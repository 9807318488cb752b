"""Exercise 2.2: monitor the embedded model generating and plot the trace (``make grade EX=2.2``)."""

from __future__ import annotations

import csv


def test_trace_of_real_generation_has_samples_csv_and_plot(exercise, embedded_hf_model, embedded_tokenizer,
                                                            tmp_path):
    ex = exercise("ch02_gpu", "ex2_2_monitor_inference")
    csv_path = tmp_path / "gen.csv"
    trace = ex.monitor_generation(embedded_hf_model, embedded_tokenizer, "The capital of France is",
                                  max_new_tokens=6, interval=0.05, csv_path=csv_path)
    assert trace.new_tokens == 6 and trace.text.strip()
    assert trace.seconds > 0 and len(trace.samples) >= 3
    rows = list(csv.DictReader(csv_path.read_text().splitlines()))
    assert len(rows) == len(trace.samples)
    mem = "mem_used_mb" if trace.source == "nvml" else "proc_rss_mb"
    # the 538 MB fp32 model lives in this process (its mmap-ed pages are resident once used) or on the GPU
    assert max(float(r[mem]) for r in rows) > 250
    png = ex.plot_trace(trace, tmp_path / "trace.png")
    assert png.exists() and png.stat().st_size > 1000
