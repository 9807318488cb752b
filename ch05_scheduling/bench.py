"""Chapter 5 benchmark: our engine (continuous vs static) vs ``transformers`` static batches vs vLLM-CPU.

Book sections: 5.2.3 优缺点分析, 5.3.4 性能提升分析, 5.4 (vLLM as the reference engine).

One seeded ShareGPT sample (prompts in the chat template, outputs capped, ``ignore_eos`` so every
engine produces exactly each request's output length, greedy, same dtype everywhere), all requests
present at t=0 (offline throughput), run by:

* our engine with continuous batching and with static batching (same knobs; static admits a new
  batch only when the previous one has completely finished), interleaved ``--repeats`` times, medians;
  beside the measured ratio, the ratio an equal-cost step would give (the trace's own upper bound: a
  static batch idles the slots of its members that already finished);
* ``transformers`` ``generate`` in left-padded static batches of the same size (a batch runs until its
  longest member ends; only each request's own tokens count);
* vLLM-CPU offline (``.venv-vllm``; eager; same ``max_num_seqs``/``max_num_batched_tokens``; its CPU
  defaults kept: chunked prefill and prefix caching on -- so ours runs with prefix caching on too).

It also checks that greedy outputs in the batch equal each request run alone (ch04's ``generate``),
and measures the simulator's error: the simulator replays the continuous run's trace with the same
scheduler settings and a cost model, and its throughput and mean TTFT are compared with the real run's.
The cost model is the one ``calibrate.py`` saved when it was measured on this setup (same hardware,
threads, model, dtype, prepacking: a held-out prediction); otherwise it is fitted on this run's own
step logs, which only tests the scheduling replay (the JSON says which: ``cost_model_held_out``).

    python -m ch05_scheduling.bench --smoke           # seconds, no vLLM
    python -m ch05_scheduling.bench --n 64 --max-output 256
"""

from __future__ import annotations

import time

import torch

from ch04_kvcache.generate import generate
from ch05_scheduling.calibrate import saved_calibration
from ch05_scheduling.config import DECODE_KERNELS
from ch05_scheduling.cost_model import fit
from ch05_scheduling.engine import EngineConfig, LLMEngine
from ch05_scheduling.metrics import summarize_requests
from ch05_scheduling.policies import make_policy
from ch05_scheduling.replay import replay
from ch05_scheduling.scheduler import Scheduler
from ch05_scheduling.simulator import simulate
from ch05_scheduling.vllm_bench import has_vllm, run_vllm
from ch05_scheduling.workload import TraceRequest, sharegpt_trace
from common.bench import interleaved, stamp_dict
from common.device import dtype_name
from common.loader import resolve_model_path


def engine_run(engine: LLMEngine, trace: list[TraceRequest], policy: str,
               skip_idle: bool = False) -> tuple[dict, list, list]:
    # a fresh scheduler (and block manager): the second run must not hit the first run's prefix cache
    engine.scheduler = Scheduler(engine.config.scheduler_config(engine.scheduler.config.num_blocks),
                                 make_policy(policy))
    engine.step_log.clear()
    seqs = replay(engine, trace, skip_idle=skip_idle)
    return summarize_requests(seqs), seqs, list(engine.step_log)


def median_run(runs: list[tuple[dict, list, list]]) -> tuple[dict, list, list]:
    """The run with the median throughput (its metrics, sequences and step log stay together)."""
    return sorted(runs, key=lambda r: r[0]["throughput_tok_s"])[len(runs) // 2]


def static_bound(trace: list[TraceRequest], batch: int) -> float:
    """continuous/static throughput if every step cost the same (a GPU's regime): the slot-steps static
    batching spends (each batch lasts as long as its longest output) over the tokens it produces."""
    steps = sum(max(r.output_len for r in trace[i:i + batch]) * len(trace[i:i + batch])
                for i in range(0, len(trace), batch))
    return steps / sum(r.output_len for r in trace)


@torch.inference_mode()
def hf_static(hf_model, trace: list[TraceRequest], batch_size: int, pad_id: int) -> tuple[float, int]:
    """Left-padded ``generate`` batches in arrival order; returns (wall seconds, useful tokens)."""
    t0 = time.perf_counter()
    useful = 0
    for i in range(0, len(trace), batch_size):
        batch = trace[i:i + batch_size]
        width = max(r.prompt_len for r in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)   # (B, T) left-padded
        mask = torch.zeros_like(ids)
        for row, r in enumerate(batch):
            ids[row, width - r.prompt_len:] = torch.tensor(r.prompt_token_ids)
            mask[row, width - r.prompt_len:] = 1
        n = max(r.output_len for r in batch)
        hf_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                          pad_token_id=pad_id)
        useful += sum(r.output_len for r in batch)
    return time.perf_counter() - t0, useful


def main(argv: list[str] | None = None) -> int:
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.loader import load_hf_model
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch05_scheduling.bench", __doc__)
    add_common_args(parser)
    parser.add_argument("--n", type=positive_int, default=64, help="requests (ShareGPT sample)")
    parser.add_argument("--max-output", type=positive_int, default=256, help="output length cap")
    parser.add_argument("--max-prompt", type=positive_int, default=1024, help="prompt length cap")
    parser.add_argument("--max-num-seqs", type=positive_int, default=16, help="batch size for every engine")
    parser.add_argument("--max-num-batched-tokens", type=positive_int, default=512)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--no-vllm", action="store_true", help="skip vLLM even if .venv-vllm exists")
    parser.add_argument("--repeats", type=positive_int, default=1,
                        help="interleaved runs of each mode (continuous, static); the median is reported")
    parser.add_argument("--no-prepack", action="store_true",
                        help="run our engine on plain nn.Linear weights (see cpu_linear.py)")
    parser.add_argument("--decode-kernel", choices=DECODE_KERNELS, default="auto",
                        help="decode attention in our engine: auto = ch04's C++ paged operator on CPU fp32 when it "
                             "builds, cpp = require it, torch = gather + SDPA (default: auto)")
    parser.add_argument("--check", type=int, default=3, help="requests re-run alone to compare outputs")
    args = parser.parse_args(argv)
    with friendly_errors():
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        n, max_out, max_prompt, seqs_cap = ((4, 12, 128, 4) if args.smoke else
                                            (args.n, args.max_output, args.max_prompt, args.max_num_seqs))
        cfg = EngineConfig(model=args.model, device=args.device, dtype=args.dtype, load_format=args.load_format,
                           seed=args.seed, max_num_seqs=seqs_cap, max_num_batched_tokens=args.max_num_batched_tokens,
                           enable_prefix_caching=True, cpu_prepack=not args.no_prepack,
                           decode_kernel=args.decode_kernel)
        engine = LLMEngine(cfg)
        trace = sharegpt_trace(engine.tokenizer, n, args.seed, max_output=max_out, max_prompt=max_prompt)
        tokens = sum(r.output_len for r in trace)
        engine.generate([list(trace[0].prompt_token_ids)], None)  # warm-up
        # Interleaved repeats (C S S C C S ...): slow drift in the machine's speed hits both modes alike.
        runs: dict[str, list] = {"continuous": [], "static": []}
        for policy in interleaved(("continuous", "static"), args.repeats):
            runs[policy].append(engine_run(engine, trace, policy))
        cont, cont_seqs, cont_log = median_run(runs["continuous"])
        static, _, static_log = median_run(runs["static"])
        bound = static_bound(trace, seqs_cap)
        # Step times drift with the machine's load, so the cost model is fitted on this run's own step
        # logs (both modes); the simulator must then reproduce the scheduling: queueing, TTFT, throughput.
        # A cost model calibrate.py saved on this setup makes the simulator's figures a prediction
        # (held out); without one, the fit on this run's own steps only tests the scheduling replay.
        cost = saved_calibration(engine) or fit(
            cont_log + static_log, {"source": "fitted on this run's step logs (in-sample; run "
                                              "python -m ch05_scheduling.calibrate first for a held-out model)"})
        sim = simulate(trace, engine.scheduler.config, "continuous", cost).metrics()
        sim_tput_err = abs(sim["throughput_tok_s"] - cont["throughput_tok_s"]) / cont["throughput_tok_s"] * 100
        sim_ttft_err = abs(sim["ttft_mean"] - cont["ttft_mean"]) / cont["ttft_mean"] * 100
        # greedy outputs in the batch == each request alone (the shortest few, to keep it quick)
        by_len = sorted(cont_seqs, key=lambda s: s.params.max_tokens)[:max(args.check, 1)]
        identical = all(generate(engine.model, s.prompt_token_ids, s.params.max_tokens, cache="contiguous",
                                 eos_token_id=None).token_ids == s.output_token_ids for s in by_len)
        hf = load_hf_model(resolve_model_path(args.model), engine.model.device, engine.model.dtype)
        pad = engine.tokenizer.pad_token_id if engine.tokenizer.pad_token_id is not None else 0
        hf_static(hf, [TraceRequest(0, 0.0, trace[0].prompt_token_ids, 2)], 1, pad)  # warm-up
        hf_s, hf_tokens = hf_static(hf, trace, seqs_cap, pad)
        del hf
        vllm_tok_s, vllm_settings, vllm_same, vllm_note = None, None, None, None
        if has_vllm() and not args.no_vllm and not args.smoke:
            try:
                res = run_vllm({"model": resolve_model_path(args.model), "dtype": {"fp32": "float32", "bf16": "bfloat16",
                                "fp16": "float16"}[dtype_name(engine.model.dtype)],
                                "prompts": [list(r.prompt_token_ids) for r in trace],
                                "output_lens": [r.output_len for r in trace], "max_num_seqs": seqs_cap,
                                "max_num_batched_tokens": args.max_num_batched_tokens,
                                "threads": torch.get_num_threads()})
                vllm_tok_s = res["output_tokens"] / res["wall_s"]
                vllm_settings = res["settings"]
                ours = {s.seq_id: s.output_token_ids for s in cont_seqs}
                vllm_same = sum(ours[r.request_id] == t for r, t in zip(trace, res["token_ids"], strict=True)) / n
            except (RuntimeError, OSError) as exc:
                vllm_note = str(exc)[:300]
        else:
            vllm_note = "skipped (--smoke, --no-vllm, or no .venv-vllm)"
        hf_tok_s = hf_tokens / hf_s
        rows = [
            {"engine": "ours, continuous batching", "tok/s": cont["throughput_tok_s"], "TTFT mean s": cont["ttft_mean"],
             "TPOT mean s": cont["tpot_mean"], "E2E p90 s": cont["e2e_p90"]},
            {"engine": "ours, static batching", "tok/s": static["throughput_tok_s"], "TTFT mean s": static["ttft_mean"],
             "TPOT mean s": static["tpot_mean"], "E2E p90 s": static["e2e_p90"]},
            {"engine": "simulator (continuous)", "tok/s": sim["throughput_tok_s"], "TTFT mean s": sim["ttft_mean"],
             "TPOT mean s": sim["tpot_mean"], "E2E p90 s": sim["e2e_p90"]},
            {"engine": "transformers, padded static", "tok/s": hf_tok_s, "TTFT mean s": float("nan"),
             "TPOT mean s": float("nan"), "E2E p90 s": float("nan")},
            {"engine": "vLLM-CPU (eager)", "tok/s": vllm_tok_s if vllm_tok_s else float("nan"),
             "TTFT mean s": float("nan"), "TPOT mean s": float("nan"), "E2E p90 s": float("nan")},
        ]
        if not args.json:
            print_table(rows, title=f"{n} ShareGPT requests, {tokens} output tokens, batch {seqs_cap}, "
                                    f"{dtype_name(engine.model.dtype)}, {torch.get_num_threads()} threads, "
                                    f"{engine.prepacked_linears} prepacked linears in our engine, "
                                    f"{engine.decode_kernel_name} decode attention")
            print(f"continuous/static: {cont['throughput_tok_s'] / static['throughput_tok_s']:.2f} measured; "
                  f"{bound:.2f} if every step cost the same (static batches idle {1 - 1 / bound:.0%} of their "
                  f"slots); on a CPU a step's cost grows with its rows, so emptier static steps are cheaper")
            print(f"simulator error: throughput {sim_tput_err:.1f}%, mean TTFT {sim_ttft_err:.1f}% "
                  f"(cost model {cost.meta['source']}{', ' + cost.meta['date'] if 'date' in cost.meta else ''}: "
                  f"{cost.describe()})")
            if vllm_note:
                print(f"vLLM: {vllm_note}")
        emit_json({
            "bench": "ch05_scheduling.bench", "requests": n, "output_tokens": tokens,
            "engine_tok_s": cont["throughput_tok_s"], "engine_static_tok_s": static["throughput_tok_s"],
            "hf_static_tok_s": hf_tok_s, "vllm_tok_s": vllm_tok_s,
            "continuous_vs_static": cont["throughput_tok_s"] / static["throughput_tok_s"],
            "continuous_vs_static_if_steps_cost_the_same": bound, "repeats": args.repeats,
            "continuous_vs_static_all": [c[0]["throughput_tok_s"] / st[0]["throughput_tok_s"]
                                         for c, st in zip(runs["continuous"], runs["static"], strict=True)],
            "engine_vs_hf": cont["throughput_tok_s"] / hf_tok_s,
            "engine_vs_vllm": cont["throughput_tok_s"] / vllm_tok_s if vllm_tok_s else None,
            "simulator_throughput_error_pct": sim_tput_err, "simulator_ttft_error_pct": sim_ttft_err,
            "outputs_identical_to_single": identical, "cost_model": cost.coef,
            "cost_model_source": cost.meta["source"], "cost_model_fit_mape_pct": cost.meta["fit_mape_pct"],
            "cost_model_held_out": cost.meta["source"] == "calibrated", "vllm_outputs_identical_frac": vllm_same,
            "engine_ttft_mean_s": cont["ttft_mean"], "static_ttft_mean_s": static["ttft_mean"],
            "engine_settings": {"max_num_seqs": seqs_cap, "max_num_batched_tokens": args.max_num_batched_tokens,
                                "enable_chunked_prefill": True, "enable_prefix_caching": True,
                                "block_size": cfg.block_size, "prepacked_linears": engine.prepacked_linears,
                                "decode_kernel": engine.decode_kernel_name},
            "vllm_settings": vllm_settings, "vllm_note": vllm_note, "threads": torch.get_num_threads(),
            "hardware": stamp_dict(dtype=dtype_name(engine.model.dtype)),
        })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
