"""Chapter 4's benchmark (book 4.1-4.6): every cache against no cache, in one run, on this machine.

One greedy run at batch 1 with the embedded model advances no cache, the contiguous, paged and INT8
caches one step each in turn (lockstep, after warm-up), so machine noise hits all of them alike. It gives:

* ``tokens_identical``: greedy tokens of the contiguous and paged caches equal the no-cache tokens;
* ``speedup_kv_cache``: wall time of generating 256 tokens without a cache / with the contiguous cache;
* ``paged_vs_contiguous_decode``: decode tokens/s of the paged cache / the contiguous one: the price of
  the block-table indirection;
* ``paged_kv_utilization`` / ``naive_kv_utilization``: bytes holding real tokens / bytes reserved on a
  seeded ShareGPT workload (``memory_waste.py``);
* ``int8_kv_ppl_delta_pct``: perplexity change of the INT8 KV cache on the held-out evaluation text;
* ``logits_max_abs_diff_vs_transformers``: our model against ``transformers``, fp32.

    python -m ch04_kvcache.compare            # several minutes on 2 cores (the no-cache run dominates)
    python -m ch04_kvcache.compare --smoke    # short lengths, for CI
On a busy shared machine set ``OMP_NUM_THREADS=1``: oversubscribed OpenMP threads spin and distort timings.
"""

from __future__ import annotations

import torch

from ch04_kvcache.model import LlamaModel
from ch04_kvcache.no_cache_vs_cache import LONG_PROMPT, lockstep
from ch04_kvcache.no_cache_vs_cache import compare as compare_no_cache


@torch.inference_mode()
def logits_diff_vs_transformers(model: LlamaModel, spec: str, n_tokens: int = 64, seed: int = 0) -> float:
    """Max |ours - transformers| over the logits of ``n_tokens`` random tokens (fp32 on CPU)."""
    from common.loader import load_hf_model

    hf = load_hf_model(spec, "cpu", torch.float32)
    ids = torch.randint(0, model.config.vocab_size, (1, n_tokens), generator=torch.Generator().manual_seed(seed))
    ours = model.to("cpu", torch.float32)(ids)
    return (ours - hf(ids).logits).abs().max().item()


def kv_utilization(smoke: bool, seed: int) -> dict:
    """Naive vs paged KV utilization from the memory-waste module (written alongside this one)."""
    try:
        from ch04_kvcache import memory_waste
    except ImportError:
        return {"paged_kv_utilization": None, "naive_kv_utilization": None,
                "kv_utilization_note": "ch04_kvcache.memory_waste is not available"}
    return memory_waste.utilization_summary(smoke=smoke, seed=seed)


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.cli_model import model_from_args
    from ch04_kvcache.int8_kv import Int8KVCache
    from ch04_kvcache.kv_cache import ContiguousKVCache
    from ch04_kvcache.quality import perplexity
    from common.bench import stamp_dict
    from common.chat import chat_ids
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.datasets import eval_token_ids
    from common.device import dtype_name
    from common.loader import load_tokenizer
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch04_kvcache.compare", __doc__)
    add_common_args(parser)
    parser.add_argument("--new-tokens", type=positive_int, default=256, help="tokens for the no-cache comparison")
    parser.add_argument("--eval-tokens", type=positive_int, default=4096, help="tokens for the INT8 perplexity")
    args = parser.parse_args(argv)
    with friendly_errors():
        model = model_from_args(args)
        tok = load_tokenizer(args.model)
        prompt = chat_ids(tok, LONG_PROMPT)
        n_new = 8 if args.smoke else args.new_tokens
        n_eval = 128 if args.smoke else args.eval_tokens

        nc = compare_no_cache(model, prompt, n_new, kinds=("none", "contiguous", "paged"))
        speed = {k: nc.traces[k].decode_tokens_per_s() for k in ("contiguous", "paged")}
        int8_tokens = lockstep(model, prompt, n_new, ("int8",))["int8"].tokens
        util = kv_utilization(args.smoke, args.seed)
        ids = eval_token_ids(tok, n_eval)
        ppl = perplexity(model, ids, cache_factory=lambda m, n: ContiguousKVCache(m.config, 1, n, m.device, m.dtype))
        ppl8 = perplexity(model, ids, cache_factory=lambda m, n: Int8KVCache(m.config, 1, n, m.device, m.dtype))
        diff = logits_diff_vs_transformers(model, args.model)

        out = {
            "tokens_identical": nc.tokens_identical,
            "speedup_kv_cache": nc.speedup_at_max,
            "speedup_new_tokens": n_new,
            "paged_kv_utilization": util.get("paged_kv_utilization"),
            "naive_kv_utilization": util.get("naive_kv_utilization"),
            "paged_vs_contiguous_decode": speed["paged"] / speed["contiguous"],
            "decode_tok_s_contiguous": speed["contiguous"],
            "decode_tok_s_paged": speed["paged"],
            "int8_kv_ppl_delta_pct": 100 * (ppl8.ppl - ppl.ppl) / ppl.ppl,
            "int8_greedy_identical": int8_tokens == nc.traces["none"].tokens,
            "eval_tokens": ppl.tokens_scored,
            "logits_max_abs_diff_vs_transformers": diff,
            "flop_ratio_no_cache_vs_cache": nc.rows[-1]["flop_ratio"],
            **{k: v for k, v in util.items() if k not in ("paged_kv_utilization", "naive_kv_utilization")},
        }
        if not args.json:
            rows = [{"figure": k, "value": v} for k, v in out.items() if not isinstance(v, (dict, list))]
            print_table(rows, title=f"chapter 4 summary: {args.model}, prompt {len(prompt)} tokens, batch 1")
        emit_json({"benchmark": "ch04.compare", **out, "hardware": stamp_dict(dtype=dtype_name(model.dtype))})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
