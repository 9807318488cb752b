"""ch04's C++ paged decode operator equals the naive paged attention, and says why when it cannot be used."""

from __future__ import annotations

import pytest
import torch

from ch04_kvcache.paged_attention import (
    AttentionMetadata,
    build_plan,
    paged_attention,
    paged_attention_reference,
)
from common.cpp_ext import cpp_toolchain_problem

needs_toolchain = pytest.mark.skipif(cpp_toolchain_problem() is not None,
                                     reason=f"cannot build C++ extensions here: {cpp_toolchain_problem()}")


@needs_toolchain
@pytest.mark.parametrize(("seqs", "max_ctx", "block_size", "hkv", "group"),
                         [(1, 1, 4, 1, 1), (3, 37, 4, 2, 4), (5, 200, 16, 3, 3), (2, 64, 16, 4, 1)])
def test_kernel_equals_the_naive_reference(seqs, max_ctx, block_size, hkv, group):
    from ch04_kvcache.paged_decode_cpu import kernel, random_case

    q, k, v, meta = random_case(seqs, max_ctx, block_size, hkv=hkv, group=group, d=32, seed=seqs)
    plan = build_plan(meta, block_size, q.device, decode_kernel=kernel)
    got = paged_attention(q, k.view(-1, hkv, 32), v.view(-1, hkv, 32), plan)
    torch.testing.assert_close(got, paged_attention_reference(q, k, v, meta), rtol=1e-5, atol=1e-5)


def test_mixed_batches_keep_the_torch_path():
    from ch04_kvcache.paged_decode_cpu import kernel

    meta = AttentionMetadata([5, 1], [5, 9], [[7, 2], [3, 11, 5]], torch.tensor([28, 29, 30, 31, 8, 20]))
    plan = build_plan(meta, 4, torch.device("cpu"), decode_kernel=kernel)
    assert not plan.decode_only and plan.decode_kernel is None  # prefill rows: gather + SDPA as before


@needs_toolchain
def test_make_decode_kernel_gives_the_operator_on_cpu_fp32():
    from ch04_kvcache.paged_decode_cpu import kernel, make_decode_kernel

    assert make_decode_kernel("cpu", torch.float32) == (kernel, None)


@pytest.mark.parametrize(("device", "dtype", "words"), [("cuda", torch.float32, "CPU"),
                                                         ("cpu", torch.bfloat16, "float32")])
def test_make_decode_kernel_refuses_other_devices_and_dtypes_with_a_reason(device, dtype, words):
    from ch04_kvcache.paged_decode_cpu import make_decode_kernel

    found, reason = make_decode_kernel(device, dtype)
    assert found is None and words in reason and "\n" not in reason


def test_missing_toolchain_means_no_kernel_and_a_sentence_saying_what_to_install(monkeypatch):
    from ch04_kvcache.paged_decode_cpu import make_decode_kernel
    from common import cpp_ext

    monkeypatch.setattr(cpp_ext, "cpp_toolchain_problem", lambda: "no C++ compiler (c++) on PATH: install g++")
    found, reason = make_decode_kernel("cpu", torch.float32)
    assert found is None and "install g++" in reason


def test_toolchain_check_names_the_missing_compiler(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    assert "no-such-compiler-xyz" in cpp_toolchain_problem()
