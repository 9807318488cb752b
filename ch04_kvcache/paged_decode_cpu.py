"""Paged decode attention as a C++ CPU operator that reads K/V where they lie in the block pool (4.3.2; 9.5).

    python -m ch04_kvcache.paged_decode_cpu            # builds once (about a minute), checks it against
                                                       # the naive reference, says whether engines use it
    python -m ch04_kvcache.paged_decode_cpu --smoke

``paged_attention.py`` serves a decode batch in three passes over memory: ``index_select`` copies every
sequence's K and V out of the block pool (padded to the longest context), then SDPA reads the copies.
This operator is PagedAttention's own kernel, what vLLM's CPU paged-attention kernel does: one task per
sequence walks its block table, reads each token's K row (all KV heads, contiguous) once for every
query head (GQA: head h uses KV head h / group), keeps the scores in a small buffer, then reads each V
row once. No copy, no padding.

It plugs into ``LlamaModel.decode_kernel`` (the :data:`~ch04_kvcache.paged_attention.DecodeKernel`
hook): pure-decode batches use it, mixed batches (prefill chunks) keep gather + SDPA.
:func:`make_decode_kernel` gives it only where it applies (CPU, float32, a working C++ toolchain, a
successful build) and otherwise says why in one sentence; chapter 5's engine calls it for the models it
loads (``EngineConfig.decode_kernel``). The C++ is ``csrc/paged_decode.cpp``, built with
``common.cpp_ext.load_extension`` on first use and cached under ``cache_dir()/torch_extensions/<isa>/
ch04_paged_decode``. Chapter 9 (``ch09_advanced/paged_decode_bench.py``) measures it; the tests hold it to
:func:`paged_attention_reference`.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch

from ch04_kvcache.paged_attention import (
    AttentionMetadata,
    DecodeKernel,
    PagedPlan,
    build_plan,
    paged_attention,
    paged_attention_reference,
)
from common import cpp_ext

CSRC = Path(__file__).resolve().parent / "csrc"
SOURCES = [CSRC / "paged_decode.cpp"]  # the operator, in C++


@functools.lru_cache(maxsize=1)
def _module():
    return cpp_ext.load_extension("ch04_paged_decode", SOURCES)


def build(verbose: bool = False):
    """Compile (first call in this cache) or load (later calls) the extension; returns the module."""
    if verbose:
        return cpp_ext.load_extension("ch04_paged_decode", SOURCES, verbose=True)
    return _module()


def kernel(q: torch.Tensor, k_flat: torch.Tensor, v_flat: torch.Tensor, plan: PagedPlan) -> torch.Tensor:
    """The ``DecodeKernel`` signature: q (S, H, D), k_flat/v_flat (num_slots, Hkv, D) -> (S, H, D), in place."""
    return build().paged_decode(q.contiguous(), k_flat, v_flat, plan.block_tables, plan.context_lens_t,
                                plan.block_size, 1.0 / math.sqrt(q.shape[-1]))


def make_decode_kernel(device: torch.device | str, dtype: torch.dtype) -> tuple[DecodeKernel | None, str | None]:
    """(kernel, None) where the operator applies and builds, else (None, one sentence saying why not)."""
    if torch.device(device).type != "cpu":
        return None, f"the C++ paged decode kernel is a CPU operator (this model is on {torch.device(device)})"
    if dtype != torch.float32:
        return None, f"the C++ paged decode kernel is written for float32 (this model is {dtype})"
    problem = cpp_ext.cpp_toolchain_problem()
    if problem is not None:
        return None, f"the C++ paged decode kernel cannot be built: {problem}"
    try:
        build()
    except Exception as exc:  # noqa: BLE001 - any build failure means: fall back, and say why
        return None, f"building the C++ paged decode kernel failed ({type(exc).__name__}: {str(exc)[:200]})"
    return kernel, None


def random_case(num_seqs: int, max_ctx: int, block_size: int = 16, hkv: int = 3, group: int = 3, d: int = 64,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, AttentionMetadata]:
    """A decode batch with random contexts in shuffled blocks: q, K/V block pools, metadata."""
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randint(max(1, max_ctx // 4), max_ctx + 1, (num_seqs,), generator=g).tolist()
    need = [-(-c // block_size) for c in ctx]
    perm = (torch.randperm(sum(need), generator=g) + 1).tolist()  # block 0 stays unused
    tables, i = [], 0
    for n in need:
        tables.append(perm[i:i + n])
        i += n
    num_blocks = sum(need) + 1
    k = torch.randn(num_blocks, block_size, hkv, d, generator=g)
    v = torch.randn(num_blocks, block_size, hkv, d, generator=g)
    q = torch.randn(num_seqs, hkv * group, d, generator=g)
    slots = torch.tensor([t[(c - 1) // block_size] * block_size + (c - 1) % block_size
                          for t, c in zip(tables, ctx, strict=True)])  # the new token's slot
    return q, k, v, AttentionMetadata([1] * num_seqs, ctx, tables, slots)


def check(seqs: int = 4, max_ctx: int = 200, block_size: int = 16, seed: int = 0) -> float:
    """Max abs difference between the operator and the naive reference on one random decode batch."""
    q, k, v, meta = random_case(seqs, max_ctx, block_size, seed=seed)
    hkv, d = k.shape[2], k.shape[3]
    got = paged_attention(q, k.view(-1, hkv, d), v.view(-1, hkv, d), build_plan(meta, block_size, q.device, kernel))
    return (got - paged_attention_reference(q, k, v, meta)).abs().max().item()


def main(argv: list[str] | None = None) -> int:
    from common.cli import friendly_errors, make_parser

    parser = make_parser("python -m ch04_kvcache.paged_decode_cpu", __doc__)
    parser.add_argument("--smoke", action="store_true", help="a short context, for CI")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random decode batch")
    args = parser.parse_args(argv)
    with friendly_errors():
        found, reason = make_decode_kernel("cpu", torch.float32)
        if found is None:
            print(f"engines will use gather + SDPA: {reason}")
            return 0
        ctx = 64 if args.smoke else 1024
        diff = check(4, ctx, seed=args.seed)
        print(f"C++ paged decode vs naive reference, 4 sequences up to {ctx} tokens: max abs diff {diff:.2e}; "
              "engines loading a CPU fp32 model use it (EngineConfig.decode_kernel='auto')")
    return 0 if diff < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
