"""The environment doctor (3.2, 3.7): each failure case of 3.7 gives FAIL plus a fix; CPU-only is WARN."""

from __future__ import annotations

import socket

import pytest

from ch03_env import doctor as d
from common.report import parse_json_line


def test_cuda_mismatch_fails_with_a_fix():
    c = d.check_cuda_compat(torch_cuda="12.8", driver_cuda="12.2")
    assert c.status == d.FAIL and "12.8" in c.detail and "driver" in c.fix


def test_newer_driver_than_torch_is_ok():
    assert d.check_cuda_compat(torch_cuda="12.1", driver_cuda="12.4").status == d.OK
    assert d.check_cuda_compat(torch_cuda="11.8", driver_cuda="12.0").status == d.OK


def test_cpu_only_machine_warns_not_fails():
    assert d.check_cuda_compat(torch_cuda=None, driver_cuda=None).status == d.WARN
    assert d.check_gpus([], torch_sees=0).status == d.WARN
    assert d.check_container_gpu(daemon_ok=False, nvidia_runtime=False, has_gpu=False).status == d.WARN


def test_gpu_invisible_to_torch_fails():
    assert d.check_gpus(["NVIDIA H100"], torch_sees=0).status == d.FAIL
    assert d.check_gpus(["NVIDIA H100"], torch_sees=1).status == d.OK


def test_docker_without_gpu_runtime_on_gpu_box_fails_with_toolkit_fix():
    c = d.check_container_gpu(daemon_ok=True, nvidia_runtime=False, has_gpu=True)
    assert c.status == d.FAIL and "nvidia-ctk" in c.fix


def test_failed_dependency_install_fails():
    c = d.check_packages(["transformers"])
    assert c.status == d.FAIL and "make setup" in c.fix
    assert d.check_packages([]).status == d.OK


def test_busy_port_is_reported_with_the_owner_name():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert d.port_busy(port)
        c = d.check_ports({port: "inference server"})
    assert c.status == d.WARN and str(port) in c.detail and "--port" in c.fix


@pytest.mark.parametrize(("free", "status"), [(0.5, d.FAIL), (3.0, d.WARN), (50.0, d.OK)])
def test_disk_thresholds(free, status):
    assert d.check_disk(free, "/x").status == status


def test_old_python_and_missing_model_fail():
    assert d.check_python((3, 9)).status == d.FAIL
    assert d.check_python((3, 12)).status == d.OK
    assert d.check_model("model folder /x does not exist", "/x").status == d.FAIL


def test_doctor_runs_here_without_fail(capsys):
    rc = d.main([])
    out = capsys.readouterr().out
    data = parse_json_line(out)
    assert rc == 0 and data["counts"]["FAIL"] == 0, out
    names = [c["name"] for c in data["doctor"]]
    assert names[:3] == ["python", "packages", "torch"] and "model" in names and "ports" in names
    assert all(line[:4].strip() in {"OK", "WARN", "FAIL"} for line in out.splitlines()[:3])
