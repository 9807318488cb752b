"""common.cpu: SIMD level from CPU flags, the LLMIC_SIMD cap, and per-ISA build folders."""

from __future__ import annotations

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
