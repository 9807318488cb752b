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
loads (``EngineConfig.decode_kernel``). Built with ``common.cpp_ext.load_cpp`` on first use and cached
under ``cache_dir()/torch_extensions/paged_decode_cpu``. Chapter 9 (``ch09_advanced/paged_decode_cpu.py``)
teaches how it is built and measures it; the tests hold it to :func:`paged_attention_reference`.
"""

from __future__ import annotations

import functools
import math

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

CPP_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

// q (S, H, D); k_flat, v_flat (num_slots, Hkv, D); tables (S, max_blocks) long; ctx (S,) long -> (S, H, D)
torch::Tensor paged_decode(torch::Tensor q, torch::Tensor k_flat, torch::Tensor v_flat, torch::Tensor tables,
                           torch::Tensor ctx, int64_t block_size, double scale) {
  TORCH_CHECK(q.scalar_type() == torch::kFloat && k_flat.scalar_type() == torch::kFloat &&
              v_flat.scalar_type() == torch::kFloat, "paged_decode is written for float32");
  TORCH_CHECK(q.is_contiguous() && k_flat.is_contiguous() && v_flat.is_contiguous(), "contiguous inputs");
  const int64_t S = q.size(0), H = q.size(1), D = q.size(2), Hkv = k_flat.size(1);
  TORCH_CHECK(H % Hkv == 0, "query heads must be a multiple of KV heads");
  const int64_t G = H / Hkv, max_blocks = tables.size(1);
  auto tab = tables.contiguous();
  auto lens = ctx.contiguous();
  auto out = torch::empty_like(q);
  const float* qp = q.data_ptr<float>();
  const float* kp = k_flat.data_ptr<float>();
  const float* vp = v_flat.data_ptr<float>();
  const int64_t* tp = tab.data_ptr<int64_t>();
  const int64_t* lp = lens.data_ptr<int64_t>();
  float* op = out.data_ptr<float>();
  const float sc = (float)scale;
  // one task per sequence: each token's K row (all KV heads, contiguous) is read once, for all H heads
  at::parallel_for(0, S, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores, acc(H * D), mx(H), sum(H);
    for (int64_t s = begin; s < end; ++s) {
      const int64_t n = lp[s];
      scores.resize(H * n);
      const float* qs = qp + s * H * D;
      std::fill(mx.begin(), mx.end(), -std::numeric_limits<float>::infinity());
      for (int64_t t = 0; t < n; ++t) {                     // pass 1: q . k for every head
        const int64_t slot = tp[s * max_blocks + t / block_size] * block_size + t % block_size;
        const float* krow = kp + slot * Hkv * D;
        for (int64_t h = 0; h < H; ++h) {
          const float* qh = qs + h * D;
          const float* k = krow + (h / G) * D;              // query head h reads KV head h / G
          float dot = 0.f;
          #pragma omp simd reduction(+:dot)
          for (int64_t i = 0; i < D; ++i) dot += qh[i] * k[i];
          dot *= sc;
          scores[h * n + t] = dot;
          mx[h] = std::max(mx[h], dot);
        }
      }
      for (int64_t h = 0; h < H; ++h) {                     // softmax numerators and their sums
        float* row = scores.data() + h * n;
        float total = 0.f;
        for (int64_t t = 0; t < n; ++t) {
          row[t] = std::exp(row[t] - mx[h]);
          total += row[t];
        }
        sum[h] = total;
      }
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t t = 0; t < n; ++t) {                     // pass 2: each V row read once
        const int64_t slot = tp[s * max_blocks + t / block_size] * block_size + t % block_size;
        const float* vrow = vp + slot * Hkv * D;
        for (int64_t h = 0; h < H; ++h) {
          const float p = scores[h * n + t];
          const float* v = vrow + (h / G) * D;
          float* a = acc.data() + h * D;
          #pragma omp simd
          for (int64_t i = 0; i < D; ++i) a[i] += p * v[i];
        }
      }
      for (int64_t h = 0; h < H; ++h) {
        float* o = op + (s * H + h) * D;
        const float inv = 1.f / sum[h];
        for (int64_t i = 0; i < D; ++i) o[i] = acc[h * D + i] * inv;
      }
    }
  });
  return out;
}
"""


@functools.lru_cache(maxsize=1)
def _module():
    return cpp_ext.load_cpp("ch04_paged_decode", CPP_SOURCE, ["paged_decode"], "paged_decode_cpu")


def build(verbose: bool = False):
    """Compile (first call in this cache) or load (later calls) the extension; returns the module."""
    if verbose:
        return cpp_ext.load_cpp("ch04_paged_decode", CPP_SOURCE, ["paged_decode"], "paged_decode_cpu", True)
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
