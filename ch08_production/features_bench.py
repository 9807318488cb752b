"""What the API's sampling features cost on the real engine: parallel sampling (``n``) and ``logprobs``.

* **n = 1, 2, 4, 8 vs n independent requests** (ch05 ``parallel_sampling``): one request with ``n`` choices
  (the prompt prefilled once, its blocks forked copy-on-write) against n requests with seeds s..s+n-1 on
  a 512-token prompt: peak KV blocks, prompt tokens computed, output tok/s, and whether the tokens are
  identical (choice i = the request with seed + i; reported, not asserted). ``n4_blocks_vs_independent``
  is n = 4's peak blocks forked over independent (goal <= 0.4: the prompt's 32 blocks held once, not 4x).
* **logprobs**: a batch of 8 requests with ``logprobs=5`` vs without (tok/s, best of ``--repeats``,
  alternated so drift hits both); ``logprobs_overhead_pct`` = the throughput lost, in percent.
* **json_schema**: ch05's ``structured_bench`` on the same weights: free vs JSON-schema decoding (xgrammar's
  token mask) at batch 1 and 8, ``json_schema_overhead_pct_bs1`` / ``_bs8`` = the throughput lost, in
  percent (goal <= 10), with the grammar work per step timed directly.

Wall-clock numbers on a shared machine are measured ratios, never asserted. One loaded model serves
every run; each run gets a fresh engine (scheduler, block pool, KV cache) around it.

    python -m ch08_production.features_bench --smoke
    python -m ch08_production.features_bench --prompt-len 512 --max-tokens 64 --ns 1 2 4 8
"""

from __future__ import annotations

import dataclasses
import time

from ch05_scheduling.engine import EngineConfig, LLMEngine
from ch05_scheduling.parallel_sampling import fresh_engine, measure, summary, table_rows
from ch05_scheduling.sequence import SamplingParams
from ch05_scheduling.structured_bench import measure as schema_measure


def batch_tok_per_s(base: LLMEngine, prompts: list[list[int]], params: SamplingParams, num_blocks: int) -> float:
    """Output tokens per second of one batch, run to completion on a fresh engine."""
    engine = fresh_engine(base, num_blocks=num_blocks)
    t0 = time.perf_counter()
    outs = engine.generate(prompts, [dataclasses.replace(params, seed=(params.seed or 0) + i)
                                     for i in range(len(prompts))])
    wall = time.perf_counter() - t0
    return sum(len(o.token_ids) for o in outs) / wall


def logprobs_overhead(base: LLMEngine, prompt: list[int], params: SamplingParams, batch: int = 8,
                      k: int = 5, repeats: int = 2, num_blocks: int = 640) -> dict:
    """tok/s of ``batch`` requests with ``logprobs=k`` vs without; best of ``repeats``, alternating."""
    prompts = [prompt] * batch
    off, on = [], []
    for _ in range(repeats):
        off.append(batch_tok_per_s(base, prompts, params, num_blocks))
        on.append(batch_tok_per_s(base, prompts, dataclasses.replace(params, logprobs=k), num_blocks))
    best_off, best_on = max(off), max(on)
    return {"batch": batch, "logprobs": k, "tok_s_without": best_off, "tok_s_with": best_on,
            "logprobs_overhead_pct": 100.0 * (best_off - best_on) / best_off}


def run_all(base: LLMEngine, prompt: list[int], ns: list[int], params: SamplingParams, *, lp_prompt_len: int,
            repeats: int, num_blocks: int = 640, schema_tokens: int = 32) -> dict:
    """Everything the JSON line carries (but the hardware stamp)."""
    rows = measure(base, prompt, ns, params, num_blocks=num_blocks)
    lp = logprobs_overhead(base, prompt[:lp_prompt_len], params, repeats=repeats, num_blocks=num_blocks)
    # ch05's structured_bench on the same weights: free vs JSON-schema decoding at batch 1 and 8
    schema_engine = fresh_engine(base, num_blocks=num_blocks, max_num_seqs=8)
    schema = [schema_measure(schema_engine, b, schema_tokens, repeats) for b in (1, 8)]
    return {"parallel_sampling": rows, **summary(rows), "logprobs": lp,
            "logprobs_overhead_pct": lp["logprobs_overhead_pct"], "json_schema": schema,
            "json_schema_overhead_pct_bs1": schema[0]["overhead_pct"],
            "json_schema_overhead_pct_bs8": schema[1]["overhead_pct"]}


def main(argv: list[str] | None = None) -> int:
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.datasets import eval_token_ids
    from common.device import dtype_name
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch08_production.features_bench", __doc__)
    add_common_args(parser)
    parser.add_argument("--prompt-len", type=positive_int, default=512, help="prompt tokens for n (real text)")
    parser.add_argument("--max-tokens", type=positive_int, default=64, help="output tokens per choice/request")
    parser.add_argument("--ns", type=positive_int, nargs="+", default=[1, 2, 4, 8], help="values of n")
    parser.add_argument("--lp-prompt-len", type=positive_int, default=128,
                        help="prompt tokens of each of the 8 logprobs requests")
    parser.add_argument("--repeats", type=positive_int, default=2, help="logprobs runs per side (best kept)")
    parser.add_argument("--schema-tokens", type=positive_int, default=32,
                        help="tokens per request of the JSON-schema vs free runs")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling")
    args = parser.parse_args(argv)
    if args.smoke:
        args.prompt_len, args.max_tokens, args.ns, args.lp_prompt_len, args.repeats = 40, 3, [1, 4], 16, 1
        args.schema_tokens = 8
    with friendly_errors():
        base = LLMEngine(EngineConfig(model=args.model, device=args.device, dtype=args.dtype,
                                      load_format=args.load_format, seed=args.seed, num_blocks=16,
                                      max_num_seqs=max(16, *args.ns)))
        prompt = eval_token_ids(base.tokenizer, max(args.prompt_len, args.lp_prompt_len))
        params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p,
                                seed=args.seed, ignore_eos=True)
        res = run_all(base, prompt[:args.prompt_len], args.ns, params, lp_prompt_len=args.lp_prompt_len,
                      repeats=args.repeats, schema_tokens=args.schema_tokens)
        if not args.json:
            print_table(table_rows(res["parallel_sampling"]), floatfmt=".3g",
                        title=f"n choices (one prefill, CoW fork) vs n requests: {args.prompt_len}-token prompt, "
                              f"{args.max_tokens} tokens each, block size {base.config.block_size}, seed {args.seed}")
            lp = res["logprobs"]
            print_table([{"batch": lp["batch"], "logprobs": "off", "tok/s": lp["tok_s_without"]},
                         {"batch": lp["batch"], "logprobs": lp["logprobs"], "tok/s": lp["tok_s_with"]}],
                        floatfmt=".3g", title=f"logprobs cost: {lp['logprobs_overhead_pct']:.1f}% of tok/s")
            print_table([{"batch": r["batch"], "free tok/s": r["free_tok_s"], "schema tok/s": r["schema_tok_s"],
                          "overhead %": r["overhead_pct"], "grammar ms/step": r["grammar_ms_per_step"]}
                         for r in res["json_schema"]], floatfmt=".3g",
                        title=f"JSON schema vs free decoding (ch05 structured_bench), {args.schema_tokens} tokens")
            print(f"identical tokens (choice i = request with seed + i): {res['identical_tokens']}")
        emit_json({"prompt_len": args.prompt_len, "max_tokens": args.max_tokens, **res,
                   "hardware": stamp_dict(dtype=dtype_name(base.model.dtype))})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
