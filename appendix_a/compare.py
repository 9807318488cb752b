"""A.1 framework comparison on ONE workload in one run: our engine vs vLLM-CPU vs transformers vs llama.cpp.

    python -m appendix_a.compare               # 8 ShareGPT requests, 32 output tokens each, batch 8
    python -m appendix_a.compare --smoke       # 2 short requests; our engine and transformers only
    python -m appendix_a.compare --no-vllm --n 16 --max-output 64

The workload is chapter 5's: a seeded ShareGPT sample in the chat template, every request present at t=0,
greedy, ``ignore_eos`` so each engine produces exactly each request's output length, the same dtype and
threads everywhere. Our engine runs continuous batching (ch05), ``transformers`` runs ``generate`` in
left-padded static batches of the same size, vLLM-CPU runs offline in ``.venv-vllm`` (as ch05's bench
does; skipped when it is absent), llama.cpp runs the same weights as an F32 GGUF one request at a time
(batch 1; its row is null unless ``make llama-cpp`` installed it). Each is timed after its own warm-up.
TGI and TensorRT-LLM are cited rows: GPU servers, not run here, given no number.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass

import torch

from appendix_a.frameworks import ADVICE, CITED, RUN
from common.bench import stamp_dict
from common.cli import add_common_args, friendly_errors, make_parser, positive_int
from common.report import emit_json, print_table


@dataclass
class Row:
    framework: str
    tok_s: float | None
    seconds: float | None
    note: str = ""
    same_as_ours: float | None = None  # share of requests whose greedy tokens equal our engine's


def run_ours(args, trace, engine):
    from ch05_scheduling.bench import engine_run

    engine.generate([list(trace[0].prompt_token_ids)], None)  # warm-up
    t0 = time.perf_counter()
    metrics, seqs, _ = engine_run(engine, trace, "continuous")
    wall = time.perf_counter() - t0
    tokens = {s.seq_id: list(s.output_token_ids) for s in seqs}
    return Row(RUN[0].name, metrics["throughput_tok_s"], wall), tokens


def run_transformers(args, trace, engine) -> Row:
    from ch05_scheduling.bench import hf_static
    from ch05_scheduling.workload import TraceRequest
    from common.loader import load_hf_model, resolve_model_path

    hf = load_hf_model(resolve_model_path(args.model), engine.model.device, engine.model.dtype)
    pad = engine.tokenizer.pad_token_id if engine.tokenizer.pad_token_id is not None else 0
    hf_static(hf, [TraceRequest(0, 0.0, trace[0].prompt_token_ids, 2)], 1, pad)  # warm-up
    wall, useful = hf_static(hf, trace, args.batch, pad)
    return Row(RUN[2].name, useful / wall, wall)


def run_vllm_row(args, trace, engine, ours) -> Row:
    from ch05_scheduling.vllm_bench import has_vllm, run_vllm
    from common.device import dtype_name
    from common.loader import resolve_model_path

    if args.smoke or args.no_vllm or not has_vllm():
        return Row(RUN[1].name, None, None, "not run (--smoke, --no-vllm, or no .venv-vllm: make vllm-env)")
    try:
        res = run_vllm({"model": resolve_model_path(args.model),
                        "dtype": {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype_name(engine.model.dtype)],
                        "prompts": [list(r.prompt_token_ids) for r in trace], "output_lens": [r.output_len for r in trace],
                        "max_num_seqs": args.batch, "max_num_batched_tokens": args.max_num_batched_tokens,
                        "threads": torch.get_num_threads()})
    except (RuntimeError, OSError) as exc:
        return Row(RUN[1].name, None, None, f"failed: {str(exc)[:200]}")
    same = sum(ours[r.request_id] == t for r, t in zip(trace, res["token_ids"], strict=True)) / len(trace)
    return Row(RUN[1].name, res["output_tokens"] / res["wall_s"], res["wall_s"], "offline, eager", same)


def run_llama_cpp(args, trace, ours) -> Row:
    from ch06_quantization.gguf_llama_cpp import gguf_path, llama_cpp_decode, llama_cpp_problem

    problem = None if not args.smoke else "not run (--smoke)"
    problem = problem or llama_cpp_problem()
    if problem:
        return Row(RUN[3].name, None, None, problem if problem.startswith("not run") else f"not installed: {problem}")
    gguf = gguf_path("F32")
    threads = torch.get_num_threads()
    llama_cpp_decode(gguf, list(trace[0].prompt_token_ids), 4, threads)  # warm-up
    seconds, tokens, same = 0.0, 0, 0
    for r in trace:  # batch 1: llama-cpp-python's Llama serves one sequence
        run = llama_cpp_decode(gguf, list(r.prompt_token_ids), r.output_len, threads)
        seconds += run.prefill_s + (r.output_len - 1) / run.decode_tok_s
        tokens += r.output_len
        same += run.tokens == ours[r.request_id]
    return Row(RUN[3].name, tokens / seconds, seconds, "one request at a time (batch 1)", same / len(trace))


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m appendix_a.compare", __doc__)
    add_common_args(parser)
    parser.add_argument("--n", type=positive_int, default=8, help="requests (ShareGPT sample)")
    parser.add_argument("--max-output", type=positive_int, default=32, help="output length cap")
    parser.add_argument("--max-prompt", type=positive_int, default=256, help="prompt length cap")
    parser.add_argument("--batch", type=positive_int, default=8, help="max_num_seqs / static batch size")
    parser.add_argument("--max-num-batched-tokens", type=positive_int, default=512)
    parser.add_argument("--no-vllm", action="store_true", help="skip vLLM even if .venv-vllm exists")
    parser.add_argument("--decode-kernel", choices=("auto", "cpp", "torch"), default="auto",
                        help="our engine's decode attention: auto = ch04's C++ paged operator where it builds, "
                             "torch = gather + SDPA (no C++ build)")
    args = parser.parse_args(argv)
    with friendly_errors():
        from ch05_scheduling.engine import EngineConfig, LLMEngine
        from ch05_scheduling.workload import sharegpt_trace

        if args.smoke:
            args.n, args.max_output, args.max_prompt, args.batch = 2, 4, 64, 2
        load_before = os.getloadavg()[0]
        engine = LLMEngine(EngineConfig(model=args.model, device=args.device, dtype=args.dtype,
                                        load_format=args.load_format, seed=args.seed, max_num_seqs=args.batch,
                                        max_num_batched_tokens=args.max_num_batched_tokens,
                                        enable_prefix_caching=True, decode_kernel=args.decode_kernel))
        trace = sharegpt_trace(engine.tokenizer, args.n, args.seed, max_output=args.max_output,
                               max_prompt=args.max_prompt)
        ours_row, ours = run_ours(args, trace, engine)
        rows = [ours_row, run_vllm_row(args, trace, engine, ours), run_transformers(args, trace, engine),
                run_llama_cpp(args, trace, ours)]
        ours_row.same_as_ours = 1.0
        load_after = os.getloadavg()[0]
        hf = rows[2].tok_s

        def vs(x: float | None, y: float | None) -> float | None:
            return x / y if x and y else None

        if not args.json:
            print(f"workload: {len(trace)} ShareGPT requests, {sum(r.output_len for r in trace)} output tokens, "
                  f"prompts {min(r.prompt_len for r in trace)}-{max(r.prompt_len for r in trace)} tokens, batch "
                  f"{args.batch}, {torch.get_num_threads()} threads, greedy; 1-min load average {load_before:.1f} before, "
                  f"{load_after:.1f} after (above the core count, other processes shared the CPU)\n")
            print_table([{"framework": r.framework, "tok/s": r.tok_s if r.tok_s else "null",
                          "x transformers": vs(r.tok_s, hf) or "-", "ours / it": vs(ours_row.tok_s, r.tok_s) or "-",
                          "same tokens as ours": r.same_as_ours if r.same_as_ours is not None else "-",
                          "how it ran": r.note or next(f.how for f in RUN if f.name == r.framework)} for r in rows],
                        floatfmt=".3g", title="A.1 measured in this run")
            print()
            print_table([{"framework": f.name, "section": f.section, "status": f.how, "core idea": f.core_idea,
                          "hardware": f.hardware, "source": f.source} for f in CITED],
                        title="A.1.2-A.1.3 cited (documentation), not measured")
            print()
            for title, text in ADVICE:
                print(f"{title}: {text}")
        by = {r.framework: r for r in rows}
        emit_json({
            "bench": "appendix_a.compare", "smoke": args.smoke,
            "workload": {"requests": len(trace), "output_tokens": sum(r.output_len for r in trace),
                         "max_prompt": args.max_prompt, "max_output": args.max_output, "batch": args.batch},
            "frameworks": {r.framework: asdict(r) for r in rows},
            "engine_tok_s": ours_row.tok_s, "transformers_tok_s": hf, "vllm_tok_s": by[RUN[1].name].tok_s,
            "llama_cpp_tok_s": by[RUN[3].name].tok_s,
            "engine_vs_transformers": vs(ours_row.tok_s, hf), "engine_vs_vllm": vs(ours_row.tok_s, by[RUN[1].name].tok_s),
            "engine_vs_llama_cpp": vs(ours_row.tok_s, by[RUN[3].name].tok_s),
            "load_avg_1m_before": load_before, "load_avg_1m_after": load_after, "cpu_count": os.cpu_count(),
            "cited": [asdict(f) for f in CITED], "hardware": stamp_dict(),
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
