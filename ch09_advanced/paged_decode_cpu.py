"""Paged decode attention as a C++ CPU operator: read K/V where they lie in the block pool (9.4, 9.5).

    python -m ch09_advanced.paged_decode_cpu            # kernel vs ch04's gather + SDPA, growing contexts,
                                                        # then ch05's engine on ShareGPT with and without it
    python -m ch09_advanced.paged_decode_cpu --smoke

Chapter 4's ``paged_attention`` serves a decode batch in three passes over memory: ``index_select``
copies every sequence's K and V out of the block pool (padded to the longest context), then SDPA reads
the copies. At batch 16 with ~1,000-token contexts that copy is the largest cost of an engine step on a
CPU (ch05 README). This operator is what vLLM's CPU paged-attention kernel does: one task per
sequence walks its block table, reads each token's K row (all KV heads, contiguous) once for every
query head (GQA: head h uses KV head h / group), keeps the scores in a small buffer, then reads each
V row once. No copy, no padding.

It plugs into the model through ch04's hook (``model.decode_kernel``), so chapter 5's engine runs
unchanged: :func:`install` sets it on an engine's model; pure-decode steps then use it, mixed steps
(prefill chunks) keep the torch path. Built with ``torch.utils.cpp_extension.load_inline`` on first use
(about a minute with g++), cached like ``cpp_op.py``. The tests hold it to ch04's naive reference.
"""

from __future__ import annotations

import math

import torch

from ch04_kvcache.paged_attention import AttentionMetadata, PagedPlan, build_plan, paged_attention
from common.bench import stamp_dict, time_fn
from common.cli import add_common_args, friendly_errors, make_parser, seed_everything
from common.report import emit_json, print_table

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

_MODULE = None


def build(verbose: bool = False):
    """Compile (first call) or load (later calls) the extension; returns the module."""
    global _MODULE
    if _MODULE is None:
        from ch09_advanced.cpp_op import load_cpp

        _MODULE = load_cpp("ch09_paged_decode", CPP_SOURCE, ["paged_decode"], "ch09_paged_decode", verbose)
    return _MODULE


def kernel(q: torch.Tensor, k_flat: torch.Tensor, v_flat: torch.Tensor, plan: PagedPlan) -> torch.Tensor:
    """ch04's ``DecodeKernel`` signature: q (S, H, D) -> (S, H, D), K/V read in place."""
    return build().paged_decode(q.contiguous(), k_flat, v_flat, plan.block_tables, plan.context_lens_t,
                                plan.block_size, 1.0 / math.sqrt(q.shape[-1]))


def install(engine) -> None:
    """Make a ch05 ``LLMEngine`` (or any ch04 ``LlamaModel`` holder) use the kernel for decode steps."""
    model = getattr(engine, "model", engine)
    if next(model.parameters()).device.type != "cpu" or model.dtype != torch.float32:
        raise ValueError("the C++ paged decode kernel runs on CPU in float32")
    build()
    model.decode_kernel = kernel


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


def compare(num_seqs: int, max_ctx: int, block_size: int = 16, repeats: int = 5) -> dict:
    q, k, v, meta = random_case(num_seqs, max_ctx, block_size)
    hkv, d = k.shape[2], k.shape[3]
    kf, vf = k.view(-1, hkv, d), v.view(-1, hkv, d)
    torch_plan = build_plan(meta, block_size, q.device)
    kernel_plan = build_plan(meta, block_size, q.device, decode_kernel=kernel)
    ref = paged_attention(q, kf, vf, torch_plan)
    got = paged_attention(q, kf, vf, kernel_plan)
    t_torch = time_fn(lambda: paged_attention(q, kf, vf, torch_plan), repeats=repeats).median
    t_kernel = time_fn(lambda: paged_attention(q, kf, vf, kernel_plan), repeats=repeats).median
    return {"seqs": num_seqs, "max ctx": max_ctx, "mean ctx": sum(meta.context_lens) / num_seqs,
            "torch ms": t_torch * 1e3, "kernel ms": t_kernel * 1e3, "speedup": t_torch / t_kernel,
            "max abs diff": (got - ref).abs().max().item()}


def engine_speedup(n: int = 32, max_output: int = 128, max_prompt: int = 1024, batch: int = 16,
                   repeats: int = 1, seed: int = 0) -> dict:
    """Chapter 5's engine on a ShareGPT trace with and without the kernel (interleaved runs, medians)."""
    from ch05_scheduling.bench import engine_run
    from ch05_scheduling.engine import EngineConfig, LLMEngine
    from ch05_scheduling.workload import sharegpt_trace

    engine = LLMEngine(EngineConfig(max_num_seqs=batch, enable_prefix_caching=True, seed=seed))
    trace = sharegpt_trace(engine.tokenizer, n, seed, max_output=max_output, max_prompt=max_prompt)
    engine.generate([list(trace[0].prompt_token_ids)], None)  # warm-up (and the build, below)
    build()
    tput: dict[str, list[float]] = {"torch": [], "kernel": []}
    tokens: dict[str, list] = {}
    for i in range(repeats):
        for name in (("torch", "kernel") if i % 2 == 0 else ("kernel", "torch")):
            engine.model.decode_kernel = kernel if name == "kernel" else None
            metrics, seqs, _ = engine_run(engine, trace, "continuous")
            tput[name].append(metrics["throughput_tok_s"])
            tokens[name] = [s.output_token_ids for s in seqs]
    engine.model.decode_kernel = None
    med = {k: sorted(v)[len(v) // 2] for k, v in tput.items()}
    return {"requests": n, "output_tokens": sum(r.output_len for r in trace), "batch": batch,
            "engine_tok_s": med["torch"], "engine_with_kernel_tok_s": med["kernel"],
            "engine_kernel_speedup": med["kernel"] / med["torch"],
            "engine_kernel_tokens_identical": tokens["kernel"] == tokens["torch"],
            "prepacked_linears": engine.prepacked_linears}


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch09_advanced.paged_decode_cpu", __doc__)
    add_common_args(parser, model=False)
    parser.add_argument("--seqs", type=int, default=16, help="sequences in the decode batch (and engine batch)")
    parser.add_argument("--requests", type=int, default=32, help="ShareGPT requests for the engine comparison")
    parser.add_argument("--max-output", type=int, default=128, help="output cap for the engine comparison")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved engine runs of each kind")
    parser.add_argument("--no-engine", action="store_true", help="only the kernel microbenchmark")
    args = parser.parse_args(argv)
    with friendly_errors():
        seed_everything(args.seed)
        try:
            build()
        except Exception as exc:  # noqa: BLE001 - no compiler: say what to install
            raise SystemExit(f"error: could not build the C++ extension ({type(exc).__name__}); "
                             "install g++ (apt install g++) and python3-dev, then retry") from exc
        ctxs = [64, 256] if args.smoke else [128, 512, 1024, 2048]
        rows = [compare(4 if args.smoke else args.seqs, c, repeats=2 if args.smoke else 5) for c in ctxs]
        if not args.json:
            print_table(rows, title=f"one layer's decode attention (SmolLM2 shapes: 9 query heads, 3 KV heads, "
                                    f"head dim 64, block 16), fp32, {torch.get_num_threads()} threads")
        eng = {} if args.no_engine else (engine_speedup(4, 8, 128, 4) if args.smoke else
                                         engine_speedup(args.requests, args.max_output, batch=args.seqs,
                                                        repeats=args.repeats))
        if eng and not args.json:
            print(f"ch05 engine, {eng['requests']} ShareGPT requests, batch {eng['batch']}: "
                  f"{eng['engine_tok_s']:.1f} tok/s with gather + SDPA, {eng['engine_with_kernel_tok_s']:.1f} "
                  f"with the kernel ({eng['engine_kernel_speedup']:.2f}x), identical tokens: "
                  f"{eng['engine_kernel_tokens_identical']}")
        emit_json({"bench": "ch09_advanced.paged_decode_cpu", "results": rows,
                   "max_abs_diff": max(r["max abs diff"] for r in rows),
                   "speedup_at_longest": rows[-1]["speedup"], **eng, "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
