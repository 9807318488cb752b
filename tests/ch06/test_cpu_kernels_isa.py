"""ch06's C++ kernels built for the scalar level: the same equality tests, rebuilt with ``LLMIC_SIMD=scalar``.

The native build (``-march=native``) is what the other kernel tests run. A reader's CPU may have less: an AVX2
machine compiles the AVX2 intrinsics without the AVX-512 code the compiler would add here, and a CPU without
AVX2 runs the scalar loops. Each lower level is built in its own folder (``common.cpp_ext.SIMD_CFLAGS``) and
the kernels' equality tests run against it in a child process, so no path depends on which CPU ran CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ch06_quantization.cpu_gemv import gemv_problem
from common.cpu import SIMD_ENV, native_simd_level

REPO = Path(__file__).resolve().parents[2]
EQUALITY_TESTS = [
    "tests/ch06/test_cpu_gemv.py::test_the_extension_was_built_for_this_simd_level",
    "tests/ch06/test_cpu_gemv.py::test_fp32_kernel_equals_f_linear",
    "tests/ch06/test_cpu_gemv.py::test_int8_kernel_equals_f_linear_on_the_dequantized_weight",
    "tests/ch06/test_cpu_w8a8.py::test_kernel_equals_the_integer_reference",
    "tests/ch06/test_cpu_packed.py::test_packed_gemv_equals_f_linear",
    "tests/ch06/test_cpu_decode.py::test_fused_step_equals_the_model",
    "tests/ch06/test_cpu_qgemv.py::test_the_path_follows_the_simd_level",
    "tests/ch06/test_cpu_qgemv.py::test_kernel_equals_the_integer_and_the_dequantized_references",
    "tests/ch06/test_cpu_qgemv.py::test_act_order_columns_are_gathered",
    "tests/ch06/test_cpu_qgemv.py::test_the_largest_block_sums_stay_exact",
]
# The scalar build on every CPU that has more: the AVX2 intrinsics are what any AVX2 or AVX-512 CPU runs (the
# other tests), the scalar loops are what nothing else exercises. An AVX2-capped build is one more minute of
# g++ here: run it by hand with LLMIC_SIMD=avx2 pytest tests/ch06/test_cpu_gemv.py ... on an AVX-512 machine.
# LLMIC_TEST_AVX2=1 adds the AVX2 build on an AVX-512 machine (cpu_qgemv's maddubs path; measured 2026-12-03: all
# of these pass there).
LOWER = ["scalar"] if native_simd_level() != "scalar" else []
if native_simd_level() == "avx512" and os.environ.get("LLMIC_TEST_AVX2") == "1":
    LOWER.insert(0, "avx2")

pytestmark = pytest.mark.skipif(gemv_problem() is not None, reason=f"no C++ toolchain: {gemv_problem()}")


@pytest.mark.slow
@pytest.mark.skipif(not LOWER, reason="this CPU has no SIMD level below the scalar one")
@pytest.mark.parametrize("level", LOWER)
def test_kernels_equal_their_references_when_built_for_a_lower_level(level):
    env = dict(os.environ, **{SIMD_ENV: level})
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0",
                           *EQUALITY_TESTS], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    tail = proc.stdout[-3000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and "skipped" not in tail.splitlines()[-1], tail


# cpu_qgemv's paths share their arithmetic: exact int32 block sums, then the same fp32 epilogue in the same order
# (csrc/qgemv.cpp). So a lower build must give the native build's outputs bit for bit, not just to a tolerance.
QGEMV_OUTPUTS = """
import sys, torch
from torch import nn
from ch06_quantization.cpu_qgemv import PackedLinear
from ch06_quantization.rtn import QuantLinear, QuantSpec, quantize_rtn
torch.manual_seed(0)
outs = []
for spec in [QuantSpec(4, "group", 64), QuantSpec(4, "group", 32, symmetric=True), QuantSpec(8, "channel", symmetric=True),
             QuantSpec(8, "group", 64)]:
    lin = nn.Linear(192, 144)
    for act_bits in (8, 16):
        ql = QuantLinear(quantize_rtn(lin.weight, spec), lin.bias)
        packed = PackedLinear.from_quant_linear(ql, max_rows=32, act_bits=act_bits)
        with torch.inference_mode():
            outs += [packed(torch.randn(rows, 192) * 3) for rows in (1, 5, 16)]
torch.save(outs, sys.argv[1])
"""


@pytest.mark.slow
@pytest.mark.skipif(not LOWER, reason="this CPU has no SIMD level below the scalar one")
@pytest.mark.parametrize("level", LOWER)
def test_packed_gemv_gives_the_native_builds_bits_when_built_for_a_lower_level(level, tmp_path):
    import torch

    outputs = {}
    for build, env in (("native", {}), (level, {SIMD_ENV: level})):
        path = tmp_path / f"{build}.pt"
        proc = subprocess.run([sys.executable, "-c", QGEMV_OUTPUTS, str(path)], cwd=REPO, env=dict(os.environ, **env),
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outputs[build] = torch.load(path)
    assert len(outputs["native"]) == 24
    for mine, lower in zip(outputs["native"], outputs[level], strict=True):
        assert torch.equal(mine, lower)
