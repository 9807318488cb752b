"""Parallel sampling on shared KV blocks: ``n`` choices of one prompt, forked vs ``n`` separate requests
(book 4.4.3 Shared KV Cache; the engine side is ``sequence_group.py``).

For each ``n`` the same prompt (default 512 tokens of real text) is sampled on the real engine, each run
on a fresh block pool around the same loaded weights:

* **fork**: one request with ``SamplingParams(n=n, seed=s)``: the prompt is prefilled once, its blocks
  are forked into the n choices, the shared partial last block (if any) is copied on write;
* **independent**: n requests with seeds ``s, s+1, ..., s+n-1``, prefix caching off: n prefills, n copies
  of the prompt's K/V;
* **independent + prefix caching** (``--prefix``): the same n requests with prefix caching on; submitted
  together they are prefilled in the same steps, before any block is hashed, so little is shared.

It reports (never asserts: the JSON carries ``identical_tokens``) whether the runs give identical tokens,
choice i = the request with seed s + i; the peak number of KV blocks in use (read after every step); the
prompt tokens actually computed; and the output tokens per second of the whole run (wall clock on a shared
machine: a measured ratio). ``n4_blocks_vs_independent`` is the peak blocks of n = 4 forked over n = 4
independent requests (the prompt's blocks held once instead of four times). ch08's ``features_bench``
runs the same measurement next to the logprobs overhead.

    python -m ch05_scheduling.parallel_sampling --smoke
    python -m ch05_scheduling.parallel_sampling --prompt-len 512 --max-tokens 64 --ns 1 2 4 8
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from ch05_scheduling.engine import EngineConfig, LLMEngine
from ch05_scheduling.sequence import SamplingParams


@dataclass(frozen=True, slots=True)
class RunResult:
    """One mode at one n: what the block pool and the clock saw."""

    peak_blocks: int
    prefill_tokens: int
    tokens: list[list[int]]       # choice i's (or request i's) output token ids
    wall_s: float

    @property
    def tok_per_s(self) -> float:
        return sum(len(t) for t in self.tokens) / self.wall_s if self.wall_s > 0 else 0.0


def fresh_engine(base: LLMEngine, **overrides) -> LLMEngine:
    """A new engine (scheduler, block pool, KV cache) around ``base``'s loaded weights and tokenizer."""
    return LLMEngine(dataclasses.replace(base.config, **overrides), model=base.model, tokenizer=base.tokenizer)


def run(base: LLMEngine, prompt: list[int], params: SamplingParams, n: int, mode: str,
        num_blocks: int = 640) -> RunResult:
    """``mode``: ``fork`` (one request, n choices), ``independent`` or ``independent+prefix`` (n requests)."""
    engine = fresh_engine(base, enable_prefix_caching=mode == "independent+prefix", num_blocks=num_blocks)
    bm = engine.scheduler.block_manager
    t0 = time.perf_counter()
    if mode == "fork":
        ids = [engine.add_request(prompt, dataclasses.replace(params, n=n))]
    else:
        seed = params.seed or 0
        ids = [engine.add_request(prompt, dataclasses.replace(params, seed=seed + i)) for i in range(n)]
    final, peak = {}, 0
    while engine.has_unfinished():
        for o in engine.step():
            if o.finished:
                final[o.request_id] = o
        peak = max(peak, bm.num_used_blocks)
    wall = time.perf_counter() - t0
    tokens = ([list(c.token_ids) for c in final[ids[0]].completions] if mode == "fork"
              else [list(final[i].token_ids) for i in ids])
    prefill = sum(r.features.num_prefill_tokens for r in engine.step_log)
    return RunResult(peak, prefill, tokens, wall)


def measure(base: LLMEngine, prompt: list[int], ns: list[int], params: SamplingParams,
            prefix: bool = False, num_blocks: int = 640) -> list[dict]:
    """One row per n: fork vs independent (and independent + prefix caching when asked)."""
    rows = []
    for n in ns:
        f = run(base, prompt, params, n, "fork", num_blocks)
        ind = run(base, prompt, params, n, "independent", num_blocks)
        row = {"n": n, "fork_peak_blocks": f.peak_blocks, "indep_peak_blocks": ind.peak_blocks,
               "blocks_fork_vs_indep": f.peak_blocks / ind.peak_blocks,
               "fork_prefill_tokens": f.prefill_tokens, "indep_prefill_tokens": ind.prefill_tokens,
               "fork_tok_s": f.tok_per_s, "indep_tok_s": ind.tok_per_s,
               "speedup_vs_indep": f.tok_per_s / ind.tok_per_s if ind.tok_per_s else None,
               "identical_tokens": f.tokens == ind.tokens, "distinct_choices": len({tuple(t) for t in f.tokens})}
        if prefix:
            pre = run(base, prompt, params, n, "independent+prefix", num_blocks)
            row.update(prefix_peak_blocks=pre.peak_blocks, prefix_prefill_tokens=pre.prefill_tokens,
                       prefix_tok_s=pre.tok_per_s, identical_tokens=row["identical_tokens"] and pre.tokens == ind.tokens)
        rows.append(row)
    return rows


def table_rows(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        t = {"n": r["n"], "fork blocks": r["fork_peak_blocks"], "indep blocks": r["indep_peak_blocks"],
             "fork/indep": r["blocks_fork_vs_indep"],
             "prefill tok fork/indep": f"{r['fork_prefill_tokens']}/{r['indep_prefill_tokens']}",
             "fork tok/s": r["fork_tok_s"], "indep tok/s": r["indep_tok_s"]}
        if "prefix_peak_blocks" in r:
            t.update({"indep+prefix blocks": r["prefix_peak_blocks"], "indep+prefix tok/s": r["prefix_tok_s"]})
        t.update({"identical": r["identical_tokens"], "distinct": r["distinct_choices"]})
        out.append(t)
    return out


def summary(rows: list[dict]) -> dict:
    """The headline keys: identical tokens for every n, and n = 4's block and speed ratios when measured."""
    by_n = {r["n"]: r for r in rows}
    s = {"identical_tokens": all(r["identical_tokens"] for r in rows)}
    if 4 in by_n:
        s["n4_blocks_vs_independent"] = by_n[4]["blocks_fork_vs_indep"]
        s["n4_speedup_vs_independent"] = by_n[4]["speedup_vs_indep"]
    return s


def main(argv: list[str] | None = None) -> int:
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.datasets import eval_token_ids
    from common.device import dtype_name
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch05_scheduling.parallel_sampling", __doc__)
    add_common_args(parser)
    parser.add_argument("--prompt-len", type=positive_int, default=512, help="prompt tokens (real text)")
    parser.add_argument("--max-tokens", type=positive_int, default=64, help="output tokens per choice")
    parser.add_argument("--ns", type=positive_int, nargs="+", default=[1, 2, 4, 8], help="values of n")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling")
    parser.add_argument("--prefix", action="store_true", help="also run n requests with prefix caching on")
    args = parser.parse_args(argv)
    if args.smoke:
        args.prompt_len, args.max_tokens, args.ns = 40, 4, [1, 2, 4]
    with friendly_errors():
        base = LLMEngine(EngineConfig(model=args.model, device=args.device, dtype=args.dtype,
                                      load_format=args.load_format, seed=args.seed, num_blocks=16,
                                      max_num_seqs=max(16, *args.ns)))
        prompt = eval_token_ids(base.tokenizer, args.prompt_len)
        params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p,
                                seed=args.seed, ignore_eos=True)
        rows = measure(base, prompt, args.ns, params, prefix=args.prefix)
        head = summary(rows)
        bs = base.config.block_size
        if not args.json:
            print_table(table_rows(rows), floatfmt=".3g",
                        title=f"parallel sampling: {args.prompt_len}-token prompt, {args.max_tokens} tokens per "
                              f"choice, block size {bs}, T={args.temperature}, top_p={args.top_p}, seed {args.seed}")
            print("identical tokens: choice i of n (one prefill, forked blocks) = the request with seed + i"
                  if head["identical_tokens"] else "TOKENS DIFFER between the forked choices and the requests")
        emit_json({"prompt_len": args.prompt_len, "max_tokens": args.max_tokens, "block_size": bs, "rows": rows,
                   **head, "hardware": stamp_dict(dtype=dtype_name(base.model.dtype))})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
