"""2.1 and 2.2 demonstrations: the serial reference agrees with the parallel kernel; the scripts run."""

from __future__ import annotations

import pytest
import torch

from ch02_gpu import hierarchy, parallel
from ch02_gpu.hierarchy import read_bandwidth
from ch02_gpu.parallel import matmul_serial, recurrence_python, recurrence_tensor
from common.report import parse_json_line


def test_serial_matmul_agrees_with_the_vectorised_kernel():
    torch.manual_seed(0)
    a, b = torch.randn(9, 5), torch.randn(5, 7)
    torch.testing.assert_close(torch.tensor(matmul_serial(a.tolist(), b.tolist())), a @ b)


def test_recurrence_gives_the_same_value_both_ways():
    assert recurrence_tensor(500) == pytest.approx(recurrence_python(500), rel=1e-4)


def test_parallel_smoke_prints_both_tables(capsys):
    assert parallel.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    data = parse_json_line(out)
    assert "professor" in out and len(data["matmul"]) >= 3 and len(data["recurrence"]) >= 2


def test_read_bandwidth_is_positive():
    assert read_bandwidth(1 << 20, repeats=1) > 1e7


def test_hierarchy_smoke_writes_a_plot(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMIC_REPORTS_DIR", str(tmp_path))
    assert hierarchy.main(["--smoke", "--json"]) == 0
    data = parse_json_line(capsys.readouterr().out)
    assert len(data["read_bytes_per_s"]) == 3
    assert (tmp_path / "ch02" / "hierarchy.png").exists()


@pytest.mark.gpu
def test_pcie_copy_bandwidth_on_a_gpu():
    out = hierarchy.pcie_bandwidth(16 << 20)
    assert out["pinned"] > 0 and out["pageable"] > 0
