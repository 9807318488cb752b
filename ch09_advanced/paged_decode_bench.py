"""A benchmark of chapter 4's C++ paged decode operator: kernel vs gather + SDPA, alone and in the engine (9.4, 9.5).

    python -m ch09_advanced.paged_decode_bench          # kernel vs ch04's gather + SDPA, growing contexts,
                                                        # then ch05's engine on ShareGPT with and without it
    python -m ch09_advanced.paged_decode_bench --smoke

Chapter 4's ``paged_attention`` serves a decode batch in three passes over memory: ``index_select``
copies every sequence's K and V out of the block pool (padded to the longest context), then SDPA reads
the copies. At batch 16 with ~1,000-token contexts that copy is the largest cost of an engine step on a
CPU (ch05 README). The operator that avoids it is what vLLM's CPU paged-attention kernel does: one task
per sequence walks its block table, reads each token's K row (all KV heads, contiguous) once for every
query head (GQA: head h uses KV head h / group), keeps the scores in a small buffer, then reads each
V row once. No copy, no padding.

The operator is PagedAttention's own kernel, so it lives in chapter 4 (``ch04_kvcache/csrc/paged_decode.cpp``,
built and wrapped by ``ch04_kvcache/paged_decode_cpu.py``: ``build``, ``kernel``, ``make_decode_kernel``) and
chapter 5's engine uses it by default on CPU fp32 (``EngineConfig.decode_kernel="auto"``). This module holds no
kernel of its own; it measures ch04's: :func:`compare` times it against ch04's gather + SDPA per layer, and
:func:`engine_speedup` runs ch05's engine on ShareGPT with the kernel and with ``decode_kernel="torch"``. It
plugs into ch04's hook (``model.decode_kernel``): pure-decode steps use it, mixed steps (prefill chunks) keep
the torch path; :func:`install` sets it on any engine's model. The tests hold it to ch04's naive reference.
"""

from __future__ import annotations

import torch

from ch04_kvcache.paged_attention import build_plan, paged_attention
from ch04_kvcache.paged_decode_cpu import build, kernel, make_decode_kernel, random_case
from common.bench import interleaved, stamp_dict, time_fn
from common.cli import add_common_args, friendly_errors, make_parser, seed_everything
from common.report import emit_json, print_table

__all__ = ["build", "compare", "engine_speedup", "install", "kernel", "main", "random_case"]


def install(engine) -> None:
    """Make a ch05 ``LLMEngine`` (or any ch04 ``LlamaModel`` holder) use the kernel for decode steps."""
    model = getattr(engine, "model", engine)
    found, reason = make_decode_kernel(next(model.parameters()).device, next(model.parameters()).dtype)
    if found is None:
        raise ValueError(reason)
    model.decode_kernel = found


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

    engine = LLMEngine(EngineConfig(max_num_seqs=batch, enable_prefix_caching=True, seed=seed,
                                    decode_kernel="torch"))  # toggled by hand below, on one loaded model
    trace = sharegpt_trace(engine.tokenizer, n, seed, max_output=max_output, max_prompt=max_prompt)
    engine.generate([list(trace[0].prompt_token_ids)], None)  # warm-up (and the build, below)
    build()
    tput: dict[str, list[float]] = {"torch": [], "kernel": []}
    tokens: dict[str, list] = {}
    for name in interleaved(("torch", "kernel"), repeats):
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
    parser = make_parser("python -m ch09_advanced.paged_decode_bench", __doc__)
    add_common_args(parser, model=False)
    parser.add_argument("--seqs", type=int, default=16, help="sequences in the decode batch (and engine batch)")
    parser.add_argument("--requests", type=int, default=32, help="ShareGPT requests for the engine comparison")
    parser.add_argument("--max-output", type=int, default=128, help="output cap for the engine comparison")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved engine runs of each kind")
    parser.add_argument("--no-engine", action="store_true", help="only the kernel microbenchmark")
    args = parser.parse_args(argv)
    with friendly_errors():
        seed_everything(args.seed)
        found, reason = make_decode_kernel("cpu", torch.float32)
        if found is None:
            raise SystemExit(f"error: {reason}")
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
        emit_json({"bench": "ch09_advanced.paged_decode_bench", "results": rows,
                   "max_abs_diff": max(r["max abs diff"] for r in rows),
                   "speedup_at_longest": rows[-1]["speedup"], **eng, "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
