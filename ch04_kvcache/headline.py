"""Chapter 4's line in the guided tour (``make demo``): what the KV cache buys, and what paging saves.

Both figures are measured in the call: greedy generation with and without a KV cache, stepped in
lockstep on the embedded model (identical tokens checked), and the KV utilization of a naive max-length
cache vs the paged one on a seeded ShareGPT workload (``memory_waste.py``).

    python -m ch04_kvcache.headline [--smoke]
"""

from __future__ import annotations

from common.report import Headline


def headline(smoke: bool = False) -> Headline:
    from ch04_kvcache.memory_waste import utilization_summary
    from ch04_kvcache.model import LlamaModel
    from ch04_kvcache.no_cache_vs_cache import LONG_PROMPT, compare
    from common.chat import chat_ids
    from common.loader import EMBEDDED, load_tokenizer

    n = 8 if smoke else 48
    model = LlamaModel.from_pretrained(EMBEDDED)
    res = compare(model, chat_ids(load_tokenizer(EMBEDDED), LONG_PROMPT), n, lengths=[n])
    util = utilization_summary(smoke=True)  # 24 requests: the ratio is stable, the call stays short
    figures = {"new_tokens": n, "speedup_kv_cache": res.speedup_at_max, "tokens_identical": res.tokens_identical,
               "flop_ratio": res.rows[-1]["flop_ratio"], "paged_kv_utilization": util["paged_kv_utilization"],
               "naive_kv_utilization": util["naive_kv_utilization"]}
    same = "identical" if res.tokens_identical else "DIFFERENT"
    text = (f"A KV cache made generating {n} tokens {res.speedup_at_max:.1f}x faster here ({same} greedy tokens, "
            f"{figures['flop_ratio']:.0f}x fewer FLOPs), and paging it in 16-token blocks kept "
            f"{util['paged_kv_utilization']:.0%} of reserved KV memory holding real tokens vs "
            f"{util['naive_kv_utilization']:.0%} for a max-length cache (ShareGPT, {util['kv_workload_requests']} "
            f"requests)")
    return Headline("ch04", text, figures)


def main(argv: list[str] | None = None) -> int:
    from common.cli import headline_main

    return headline_main("python -m ch04_kvcache.headline", __doc__, headline, "8 tokens instead of 48", argv)


if __name__ == "__main__":
    raise SystemExit(main())
