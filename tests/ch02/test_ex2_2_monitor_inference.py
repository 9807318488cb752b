"""Exercise 2.2: monitor the embedded model generating and plot the trace (``make grade EX=2.2``).

Besides the trace's shape (tokens, samples, CSV rows, memory, PNG), the grader checks that the samples
were taken *while* the model generated: it times every forward call of the model (each slowed by 40 ms,
so even a fast machine generates for longer than two sampling intervals) and every sample the
``ch02_gpu.monitor.Monitor`` records, and wants at least two samples inside the generation.
"""

from __future__ import annotations

import csv
import time

import pytest

from ch02_gpu.monitor import Monitor

STEP_DELAY_S = 0.04


def check_trace(mod, model, tokenizer, tmp_path, mem_floor_mb: float = 250) -> None:
    calls: list[tuple[float, float]] = []
    sampled: list[float] = []
    forward, record = model.forward, Monitor._record

    def timed_forward(*args, **kwargs):
        t0 = time.perf_counter()
        time.sleep(STEP_DELAY_S)
        out = forward(*args, **kwargs)
        calls.append((t0, time.perf_counter()))
        return out

    def timed_record(self):
        sampled.append(time.perf_counter())
        return record(self)

    csv_path = tmp_path / "gen.csv"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(model, "forward", timed_forward)
        mp.setattr(Monitor, "_record", timed_record)
        trace = mod.monitor_generation(model, tokenizer, "The capital of France is", max_new_tokens=6,
                                       interval=0.05, csv_path=csv_path)
    assert trace.new_tokens == 6 and trace.text.strip()
    assert trace.seconds > 0 and len(trace.samples) >= 3
    assert calls, "the model was never called"
    start, end = calls[0][0], calls[-1][1]
    inside = [t for t in sampled if start <= t <= end]
    assert len(inside) >= 2, (f"{len(inside)} of {len(sampled)} samples were taken while the model generated "
                              f"({end - start:.2f} s): run the generation inside the Monitor")
    assert trace.seconds <= (time.perf_counter() - start) + 0.5
    rows = list(csv.DictReader(csv_path.read_text().splitlines()))
    assert len(rows) == len(trace.samples)
    mem = "mem_used_mb" if trace.source == "nvml" else "proc_rss_mb"
    # the 538 MB fp32 model lives in this process (its mmap-ed pages are resident once used) or on the GPU
    assert max(float(r[mem]) for r in rows) > mem_floor_mb
    png = mod.plot_trace(trace, tmp_path / "trace.png")
    assert png.exists() and png.stat().st_size > 1000


def test_trace_of_real_generation_has_samples_csv_and_plot(exercise, embedded_hf_model, embedded_tokenizer,
                                                            tmp_path):
    check_trace(exercise("ch02_gpu", "ex2_2_monitor_inference"), embedded_hf_model, embedded_tokenizer, tmp_path)
