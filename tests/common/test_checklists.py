"""Every chapter's checklist (实战检查清单): each item says OK, WARN or FAIL for the case it is about, with a
fix for anything not OK, and every ``python -m chNN_x.checklist --json`` (chapters 1-9) runs here and prints one JSON line."""

from __future__ import annotations

import importlib
import json
import socket

import pytest

from ch01_economics import checklist as c1
from ch02_gpu import checklist as c2
from ch03_env import checklist as c3
from ch04_kvcache import checklist as c4
from ch05_scheduling import checklist as c5
from ch05_scheduling.cost_model import CostModel
from ch06_quantization import checklist as c6
from ch07_speculative import checklist as c7
from ch08_production import checklist as c8
from ch09_advanced import checklist as c9
from common.checklist import FAIL, OK, WARN, Check

AVX512 = frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"})
AVX2 = frozenset({"avx2", "fma"})


def status(check: Check) -> str:
    assert check.status == OK or check.fix, f"{check.name}: a {check.status} without a fix"
    return check.status


def test_a_check_that_is_not_ok_must_say_how_to_fix_it():
    with pytest.raises(ValueError, match="fix"):
        Check("x", WARN, "something is off")


@pytest.mark.parametrize("module", ["ch01_economics", "ch04_kvcache", "ch05_scheduling", "ch06_quantization", "ch07_speculative",
                                    "ch08_production", "ch09_advanced"])
def test_each_checklist_runs_and_prints_one_json_line(module, capsys):
    mod = importlib.import_module(f"{module}.checklist")
    code = mod.main(["--json"])
    out = capsys.readouterr().out.strip().splitlines()
    line = json.loads(out[-1])
    assert code == (1 if line["counts"]["FAIL"] else 0)
    assert line["checklist"] and all(c["status"] in (OK, WARN, FAIL) for c in line["checklist"])


def test_ch01_an_idle_or_unmeasured_machine_and_a_missed_cost_target():
    assert status(c1.check_throughput(None, "the report's key: not measured")) == FAIL
    assert status(c1.check_price("price_cpu_vm")) == WARN
    assert status(c1.check_price("given (--price-per-hour)")) == OK
    assert status(c1.check_utilization(0.2)) == WARN
    assert status(c1.check_cost(1.28, 0.5)) == FAIL
    assert status(c1.check_cost(0.32, 0.5)) == OK
    assert status(c1.check_cost(None, None)) == FAIL


def test_ch02_memory_fit_and_the_decode_roofline():
    assert status(c2.check_memory_fit(1 << 30, 8 << 30, "in RAM")) == OK
    assert status(c2.check_memory_fit(15 << 30, 16 << 30, "in RAM")) == WARN
    assert status(c2.check_memory_fit(20 << 30, 16 << 30, "on GPU 0")) == FAIL
    # 538 MB of weights at 50 GB/s: ~93 tok/s at most
    assert status(c2.check_decode_bound(538_000_000, 50e9, 50)) == OK
    assert status(c2.check_decode_bound(538_000_000, 50e9, 200)) == FAIL
    assert status(c2.check_threads(4, 2, "4")) == WARN
    assert status(c2.check_weight_dtype("bf16", "cpu", AVX2)) == WARN
    assert status(c2.check_weight_dtype("bf16", "cpu", AVX512)) == OK
    assert status(c2.check_weight_dtype("bf16", "cuda", frozenset(), bf16_gpu=False)) == FAIL


def test_ch03_adds_threads_and_the_simd_path_to_the_doctor():
    assert status(c3.check_simd_path("avx512", "avx512")) == OK
    assert "capped" in c3.check_simd_path("avx2", "avx512").detail
    assert status(c3.check_simd_path("scalar", "avx2")) == WARN


def test_ch04_context_and_kv_budget():
    assert status(c4.check_context(4096, 2048)) == FAIL
    assert status(c4.check_context(2048, 8192)) == OK
    per_token = 45 * 1024  # the embedded model, fp32
    assert status(c4.check_kv_budget(per_token, 1 << 30, 2048, 8, 512)) == OK
    assert status(c4.check_kv_budget(per_token, 256 << 20, 2048, 64, 512)) in (WARN, FAIL)


def test_ch05_token_budget_seats_policy_and_the_chunk_against_ttft():
    assert status(c5.check_prefill_fits(512, 2048, chunked=False)) == FAIL
    assert status(c5.check_prefill_fits(512, 2048, chunked=True)) == OK
    assert status(c5.check_decode_width(16, 32)) == WARN
    assert status(c5.check_seats_vs_blocks(100, 16, 32, 512)) == WARN  # 100 blocks hold 3 sequences of 512
    assert status(c5.check_seats_vs_blocks(4096, 16, 32, 512)) == OK
    assert status(c5.check_policy("static")) == WARN
    assert status(c5.check_policy("continuous")) == OK
    assert status(c5.check_calibration(None, "here")) == WARN
    cost = CostModel([0.01, 0.001, 0.0, 0.0, 0.0], {"hardware": "here", "date": "2026-12-03"})
    assert status(c5.check_calibration(cost, "here")) == OK
    assert status(c5.check_calibration(cost, "elsewhere")) == WARN
    # a 512-token chunk costs 0.01 + 0.512 s under that model
    assert status(c5.check_chunk_vs_ttft(cost, 512, 0.4)) == FAIL
    assert status(c5.check_chunk_vs_ttft(cost, 512, 0.8)) == WARN
    assert status(c5.check_chunk_vs_ttft(cost, 64, 0.8)) == OK


def test_ch06_group_size_vnni_and_what_vllm_cpu_can_load_on_each_isa():
    assert status(c6.check_group_size("rtn", 4, 0)) == FAIL
    assert status(c6.check_group_size("gptq", 4, 256)) == WARN
    assert status(c6.check_group_size("gptq", 4, 64)) == OK
    assert status(c6.check_vnni("w8a8", False)) == WARN
    assert status(c6.check_vnni("w8a8", True)) == OK
    assert status(c6.check_calibration("gptq", 8)) == WARN
    assert status(c6.check_vllm("gptq", "vllm", AVX2)) == FAIL       # vLLM-CPU's 4-bit kernel: AVX-512 builds only
    assert "bfloat16" in c6.check_vllm("gptq", "vllm", AVX512).detail
    assert status(c6.check_vllm("w8a8", "vllm", AVX2)) == OK
    assert status(c6.check_simd("scalar", "scalar")) == WARN


def test_ch07_speculation_that_slows_decoding_down_fails():
    assert status(c7.check_speedup(0.4, 8, 0.5, 1.8)) == FAIL
    assert status(c7.check_speedup(0.8, 4, 0.05, 1.0)) == OK
    assert status(c7.check_gamma(0.4, 8, 0.5, 1.0)) == WARN
    assert status(c7.check_vocab(32000, 49152)) == FAIL
    assert status(c7.check_vocab(49152, 49152)) == OK
    assert status(c7.check_batch(64)) == WARN


def test_ch08_exposure_port_drain_and_admission():
    assert status(c8.check_exposure("0.0.0.0", False, 0)) == FAIL
    assert status(c8.check_exposure("0.0.0.0", True, 0)) == WARN
    assert status(c8.check_exposure("127.0.0.1", False, 0)) == OK
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert status(c8.check_port("127.0.0.1", s.getsockname()[1])) == FAIL
    assert status(c8.check_omp("ACTIVE")) == WARN
    assert status(c8.check_drain(90, 60)) == FAIL
    assert status(c8.check_drain(30, c8.termination_grace_s())) == OK  # the repository's own manifest
    assert status(c8.check_admission(16, 32)) == WARN
    assert status(c8.check_admission(1024, 32)) == WARN
    assert status(c8.check_prometheus(None)) == WARN


def test_ch09_compile_payback_and_moe_memory():
    assert status(c9.check_compiler("no c++ on PATH", on_gpu=False)) == FAIL
    assert status(c9.check_compile_mode("reduce-overhead", on_gpu=False)) == WARN
    assert status(c9.check_amortised(200, 0.07, 2.29, 71)) == WARN
    assert status(c9.check_amortised(100_000, 0.07, 2.29, 71)) == OK
    assert status(c9.check_moe_memory("mixtral-8x7b", "bf16", 24 << 30, "RAM")) == FAIL
    assert status(c9.check_moe_memory("mixtral-8x7b", "int4", 80 << 30, "RAM")) == OK
