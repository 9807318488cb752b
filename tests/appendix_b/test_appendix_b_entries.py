"""Appendix B: every troubleshooting entry is provoked here, for real where this machine allows (an
allocation too large, a busy port, a missing model folder, a SIGILL, a missing vLLM) and otherwise through
the doctor's or a checklist's own check function, and the message it produced maps to that entry."""

from __future__ import annotations

import importlib
import shutil
import socket
import subprocess
import sys
from collections import namedtuple
from collections.abc import Callable

import pytest
import torch

from appendix_b import items
from appendix_b.diagnose import diagnose
from appendix_b.diagnose import main as diagnose_main
from appendix_b.entries import BY_ID, ENTRIES
from ch02_gpu.checklist import check_accelerator, check_memory_fit, check_threads, check_weight_dtype
from ch03_env import doctor
from ch04_kvcache.checklist import check_kv_budget, check_prefix_caching
from common.checklist import OK, Check, format_check


def _raised(fn: Callable[[], object]) -> str:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - the message is what the reader sees
        return f"{type(exc).__name__}: {exc}"
    raise AssertionError("expected an error")


def _line(c: Check) -> str:
    assert c.status != OK, c
    return format_check(c)


def oom() -> str:  # a real allocation far beyond RAM + swap: the allocator refuses at once
    return _raised(lambda: torch.empty(1 << 50, dtype=torch.uint8))


def no_cuda(monkeypatch) -> str:
    from common import device

    monkeypatch.setattr(device, "has_cuda", lambda: False)
    return _raised(lambda: device.pick_device("cuda"))


def kv_cache_full() -> str:
    from ch05_scheduling.scheduler import Scheduler, SchedulerConfig
    from ch05_scheduling.sequence import SamplingParams, Sequence

    sched = Scheduler(SchedulerConfig(num_blocks=2, block_size=4, max_model_len=64))
    return _raised(lambda: sched.add(Sequence(0, [5] * 6, SamplingParams(max_tokens=20))))


def context_too_long() -> str:
    from ch05_scheduling.scheduler import Scheduler, SchedulerConfig
    from ch05_scheduling.sequence import SamplingParams, Sequence

    sched = Scheduler(SchedulerConfig(max_model_len=16))
    return _raised(lambda: sched.add(Sequence(0, [5] * 20, SamplingParams(max_tokens=4))))


def model_missing(tmp_path) -> str:
    from common.loader import resolve_model_path
    from common.models import check_model_dir

    (tmp_path / "empty").mkdir()
    return "\n".join([_raised(lambda: resolve_model_path("/nonexistent/model")),
                      _raised(lambda: resolve_model_path(str(tmp_path / "empty"))),
                      check_model_dir(tmp_path / "empty") or ""])


def model_download(monkeypatch, tmp_path) -> str:
    from common import models

    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(models.shutil, "disk_usage", lambda p: Usage(10**9, 9 * 10**8, 10**8))
    return _raised(lambda: models.prepare(tmp_path / "model"))


def port_in_use() -> str:
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        a.listen()
        return _raised(lambda: b.bind(a.getsockname()))


def illegal_instruction() -> str:
    if not shutil.which("bash"):
        pytest.skip("no bash")
    code = "import os, signal; os.kill(os.getpid(), signal.SIGILL)"
    proc = subprocess.run(["bash", "-c", f'"{sys.executable}" -c "{code}"; echo "exit code $?"'],
                          capture_output=True, text=True, timeout=30)
    return proc.stderr + proc.stdout  # bash: "... Illegal instruction (core dumped) ...", "exit code 132"


def vllm_missing(monkeypatch, tmp_path) -> str:
    from ch05_scheduling import vllm_bench

    monkeypatch.setattr(vllm_bench, "VLLM_PY", tmp_path / "no-python")
    text = _raised(lambda: vllm_bench.run_vllm({}))
    if importlib.util.find_spec("vllm") is None:  # this environment has no vllm: the import error is real too
        text += "\n" + _raised(lambda: importlib.import_module("vllm"))
    return text


def vllm_4bit_cpu() -> str:
    from ch06_quantization.vllm_cpu_support import vllm_cpu_support

    return vllm_cpu_support("gptq", frozenset({"avx2"})).reason


PROVOKE: dict[str, Callable[..., str]] = {
    "no-cuda": no_cuda,
    "cuda-mismatch": lambda: _line(doctor.check_cuda_compat("12.8", "12.2")),
    "container-gpu": lambda: _line(doctor.check_container_gpu(True, False, True)),
    "oom": oom,
    "kv-cache-full": kv_cache_full,
    "thread-oversubscription": lambda: _line(check_threads(8, 2, "8")),
    "omp-busy-wait": lambda: _line(items.check_omp_wait(None, serving=True)),
    "cpu-dtype": lambda: _line(check_weight_dtype("bf16", "cpu", frozenset())),
    "model-missing": model_missing,
    "model-download": model_download,
    "vllm-4bit-cpu": vllm_4bit_cpu,
    "illegal-instruction": illegal_instruction,
    "context-too-long": context_too_long,
    "port-in-use": port_in_use,
    "vllm-missing": vllm_missing,
    "docker-daemon": lambda: _line(doctor.check_docker(None, "DockerException")),
    "debug-env": lambda: _line(items.check_debug_env({"CUDA_LAUNCH_BLOCKING": "1"})),
    "slow-kernels": lambda: _line(items.check_compiler("no C++ compiler (c++) on PATH")),
    "no-batching": lambda: _line(items.check_concurrency(1, 16)),
    "app-latency": lambda: _line(items.check_streaming(False, interactive=True)),
    "install-failed": lambda: _line(doctor.check_packages(["transformers"])),
}


def test_every_entry_has_a_provoking_test_and_ids_are_unique():
    assert sorted(PROVOKE) == sorted(BY_ID)
    assert len(BY_ID) == len(ENTRIES)
    for e in ENTRIES:
        assert e.symptom and e.cause and e.fix and e.patterns and e.section.startswith("B.1")


@pytest.mark.parametrize("entry_id", sorted(PROVOKE))
def test_provoked_error_maps_to_its_entry(entry_id, request):
    fn = PROVOKE[entry_id]
    names = fn.__code__.co_varnames[:fn.__code__.co_argcount]
    text = fn(**{n: request.getfixturevalue(n) for n in names})
    found = [d.entry.id for d in diagnose(text)]
    assert entry_id in found, f"{entry_id} not recognised in: {text!r} (got {found})"


def test_every_non_ok_doctor_and_checklist_line_maps_to_an_entry():
    non_ok = [
        doctor.check_python((3, 8)), doctor.check_packages(["torch"]), doctor.check_cuda_compat(None, None),
        doctor.check_cuda_compat(None, "12.4"), doctor.check_cuda_compat("12.8", "12.2"),
        doctor.check_gpus(None, 0), doctor.check_gpus(["H100"], 0), doctor.check_vllm(None, None),
        doctor.check_docker(None), doctor.check_container_gpu(False, False, True),
        doctor.check_container_gpu(True, False, True), doctor.check_disk(0.5, "/x"), doctor.check_disk(3.0, "/x"),
        doctor.check_ram(1.0, 8.0), doctor.check_model("model folder /m does not exist", "/m"),
        doctor.check_ports({8000: "inference server"}),
        check_accelerator(None), check_memory_fit(10 << 30, 4 << 30, "in RAM"), check_threads(8, 2, None),
        check_weight_dtype("fp16", "cpu", frozenset()), check_kv_budget(46080, 1 << 20, 2048, 16, 512),
        check_kv_budget(46080, 1 << 30, 2048, 64, 512), check_prefix_caching(600, 16, 8, False),
        items.check_torch_build("2.13.0+cpu", None, 1), items.check_min_version("transformers", "4.40.0", (4, 56)),
        items.check_compiler("no compiler"), items.check_debug_env({"TORCH_COMPILE_DEBUG": "1"}),
        items.check_omp_wait("ACTIVE", True), items.check_simd("avx512", "scalar"), items.check_simd("scalar", None),
        items.check_max_tokens(None, 2048), items.check_prompt_fits(3000, 10, 2048),
        items.check_prompt_fits(1000, 2000, 2048), items.check_concurrency(1000, 16),
        items.check_streaming(False, True),
    ]
    unmapped = [format_check(c) for c in non_ok if c.status != OK and not diagnose(format_check(c))]
    assert unmapped == []


def test_ok_lines_and_json_lines_are_not_diagnosed():
    assert diagnose("OK    omp-wait  OMP_WAIT_POLICY=PASSIVE for a server") == []
    assert diagnose('{"checklist": [{"detail": "out of memory"}]}') == []


def test_cli_maps_text_and_says_when_nothing_matches(capsys, tmp_path):
    log = tmp_path / "server.log"
    log.write_text("INFO started\nERROR: [Errno 98] error while attempting to bind on address: address already in use\n")
    assert diagnose_main(["--file", str(log), "--json"]) == 0
    assert '"port-in-use"' in capsys.readouterr().out
    assert diagnose_main(["all is well"]) == 1
    assert "no known entry" in capsys.readouterr().out
    assert diagnose_main(["--list"]) == 0
