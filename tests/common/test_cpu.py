"""common.cpu: SIMD level from CPU flags, the LLMIC_SIMD cap, and per-ISA build folders."""

from __future__ import annotations

import os

import pytest

from common import cpu

AVX512 = frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"})
AVX2 = frozenset({"avx2", "fma", "sse4_2"})


def test_levels_follow_the_flags_not_the_machine():
    assert cpu.native_simd_level(AVX512) == "avx512"
    assert cpu.native_simd_level(AVX2) == "avx2"
    assert cpu.native_simd_level(frozenset({"sse4_2"})) == "scalar"
    assert cpu.native_simd_level(frozenset({"avx512f", "avx2", "fma"})) == "avx2"  # no BW/VL: not our AVX-512
    assert cpu.has_vnni(AVX512) and not cpu.has_vnni(AVX2) and cpu.has_vnni(frozenset({"avx_vnni"}))


def test_simd_env_caps_but_never_raises_the_level(monkeypatch):
    monkeypatch.setenv(cpu.SIMD_ENV, "avx2")
    assert cpu.simd_level(AVX512) == "avx2"
    monkeypatch.setenv(cpu.SIMD_ENV, "avx512")
    assert cpu.simd_level(AVX2) == "avx2"  # asking for more than the CPU has gives what it has
    monkeypatch.setenv(cpu.SIMD_ENV, "scalar")
    assert cpu.simd_level(AVX512) == "scalar"
    monkeypatch.setenv(cpu.SIMD_ENV, "sse9")
    with pytest.raises(ValueError, match="LLMIC_SIMD"):
        cpu.simd_level(AVX2)


def test_extension_builds_are_kept_apart_per_instruction_set(monkeypatch, tmp_path):
    from common import cpp_ext

    monkeypatch.setenv("LLMIC_CACHE_DIR", str(tmp_path))
    here = cpp_ext.extension_dir("ch06")
    assert here.parent.name == f"{cpu.isa_fingerprint()}-{cpu.simd_level()}" and here.is_relative_to(tmp_path)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: AVX2)
    assert cpp_ext.extension_dir("ch06") != here  # another CPU, another folder: no foreign -march=native code


def test_capped_builds_compile_the_fallback_in_their_own_folder(monkeypatch, tmp_path):
    from common import cpp_ext

    monkeypatch.setenv("LLMIC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cpu, "cpu_flags", lambda: AVX512)
    native = cpp_ext.extension_dir("k")
    monkeypatch.setenv(cpu.SIMD_ENV, "scalar")
    assert cpp_ext.extension_dir("k") != native and cpp_ext.extension_dir("k").parent.name.endswith("-scalar")
    assert "-mno-avx2" in cpp_ext.SIMD_CFLAGS["scalar"] and cpp_ext.SIMD_CFLAGS["avx512"] == []


def test_a_capped_level_caps_torchs_own_kernels_too():
    """LLMIC_SIMD=avx2 on an AVX-512 CPU: oneDNN and ATen are told AVX2 before their first op, so a benchmark's
    fp32 row runs what an AVX2-only CPU would (checked in a fresh process: the cap works only before first use)."""
    import subprocess
    import sys

    code = ("from common.cpu import cap_torch_isa; print(sorted(cap_torch_isa())); import torch; "
            "print(torch.backends.cpu.get_cpu_capability())")
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")}
    out = subprocess.run([sys.executable, "-c", code], env={**env, cpu.SIMD_ENV: "avx2"}, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    if cpu.native_simd_level() == "avx512":
        assert out[0] == "['ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA']" and out[1] == "AVX2"
    else:   # nothing to cap: the CPU is at most AVX2 already
        assert out[0] == "[]"
