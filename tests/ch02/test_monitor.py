"""The monitor (2.4): background sampling to CSV, command wrapping, CPU fallback, NVML on a GPU."""

from __future__ import annotations

import csv
import sys
import time

import pytest
import torch

from ch02_gpu import monitor
from ch02_gpu.monitor import CpuSampler, Monitor, NvmlSampler, nvml_reason, pick_sampler
from common.report import parse_json_line


def test_monitor_wraps_a_callable_and_sees_its_memory(tmp_path):
    path = tmp_path / "trace.csv"
    with Monitor(interval=0.05, csv_path=path, sampler=CpuSampler()) as mon:
        big = torch.ones(64 * 1024 * 1024 // 4)  # 64 MB that stays alive while sampled
        time.sleep(0.3)
        del big
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert len(rows) == len(mon.samples) >= 4
    assert list(rows[0]) == ["time_s", "cpu_pct", "proc_rss_mb", "sys_mem_used_mb", "sys_mem_pct"]
    rss = [float(r["proc_rss_mb"]) for r in rows]
    assert max(rss) - rss[0] > 50  # the 64 MB tensor shows up
    times = [float(r["time_s"]) for r in rows]
    assert times == sorted(times)
    assert {r["metric"] for r in mon.summary()} >= {"cpu_pct", "proc_rss_mb"}


def test_cli_wraps_a_command_and_returns_its_exit_code(tmp_path, capsys):
    path = tmp_path / "cmd.csv"
    code = "import time; x = bytearray(80_000_000); time.sleep(0.6); raise SystemExit(3)"
    rc = monitor.main(["--interval", "0.1", "--csv", str(path), "--cpu", "--", sys.executable, "-c", code])
    out = parse_json_line(capsys.readouterr().out)
    assert rc == 3 and out["command_rc"] == 3
    assert out["source"] == "psutil" and out["samples"] >= 3
    assert out["summary"]["proc_rss_mb"]["max"] > 70  # the child's 80 MB, seen through the process tree
    assert path.exists()


def test_without_a_gpu_the_fallback_says_why_in_one_sentence():
    if nvml_reason() is None:
        pytest.skip("this machine has an NVIDIA GPU")
    sampler, note = pick_sampler()
    assert sampler.source == "psutil"
    assert note.count(".") == 1 and "CPU" in note


def test_counters_note_points_to_nsight(capsys):
    assert monitor.main(["--counters"]) == 0
    text = capsys.readouterr().out
    assert "Nsight Compute" in text and "DCGM" in text


def test_bad_interval_is_rejected():
    with pytest.raises(ValueError):
        Monitor(interval=0, sampler=CpuSampler())


@pytest.mark.gpu
def test_nvml_sampler_reads_the_gpu(tmp_path):
    path = tmp_path / "gpu.csv"
    with Monitor(interval=0.05, csv_path=path, sampler=NvmlSampler()) as mon:
        x = torch.randn(4096, 4096, device="cuda")
        for _ in range(50):
            x = x @ x
            x = x / x.norm()
        torch.cuda.synchronize()
    rows = mon.samples
    assert rows[0]["mem_total_mb"] > 1000
    assert max(r["mem_used_mb"] for r in rows) > rows[0]["mem_used_mb"] - 1
    assert all(0 <= r["util_gpu_pct"] <= 100 for r in rows)
    assert path.read_text().startswith("time_s,gpu,util_gpu_pct")
