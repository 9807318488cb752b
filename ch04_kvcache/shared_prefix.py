"""Shared KV cache (book 4.4.3): prefix sharing across requests, fork for parallel sampling, and the
memory arithmetic of cross-layer KV sharing.

1. **Prefix sharing.** Many requests start with the same system prompt. With prefix caching the
   ``BlockManager`` stores each full block of that prefix once (blocks are found by a chained hash of
   their tokens) and every later request references it. We admit ``--requests`` ShareGPT questions,
   each behind one system prompt (chat template of the embedded model), keep them all live while they
   decode, and count the blocks used with and without sharing; bytes = blocks x bytes per block from
   the model config. The prefill tokens the cache lets us skip are counted too.
2. **Fork.** ``--samples`` completions of one prompt (parallel sampling, beam search): forked sequences
   share the prompt's full blocks; only the partial last block is copied on write.
3. **Cross-layer sharing** (CLA, Brandon et al. 2024): adjacent layers reuse one K/V, so a sharing
   factor ``g`` stores ``ceil(layers / g)`` K/V sets: pairs of layers halve the KV cache. This needs a
   model trained that way (the embedded one is not), so this part is arithmetic on the config, labelled so.

    python -m ch04_kvcache.shared_prefix [--smoke] [--requests 32] [--samples 4]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ch04_kvcache.block_manager import BlockManager
from ch04_kvcache.config import ModelConfig

SYSTEM_PROMPT = (
    "You are Atlas, the support assistant of Northwind Outfitters, an online shop for hiking, climbing and "
    "camping gear. Follow these rules in every answer. 1. Be polite, concise and concrete; prefer short "
    "paragraphs and numbered steps. 2. Never invent order numbers, prices, stock levels or delivery dates; "
    "if you do not know, say so and explain how the customer can find out in their account page. 3. Orders "
    "ship within two business days; standard delivery takes three to five business days, express delivery "
    "one to two. 4. Customers may return unused items within 30 days for a full refund; worn footwear can "
    "be returned only if it is defective. 5. Warranty claims need a photo of the defect and the order "
    "number. 6. For safety questions about climbing equipment, always recommend the manufacturer's manual "
    "and a certified instructor, and never approve equipment that has been dropped from height or shows "
    "damage. 7. Do not give medical, legal or financial advice. 8. If the customer is angry, acknowledge "
    "the problem first, then offer a solution. 9. Answer in the language of the question. 10. If a "
    "question has nothing to do with the shop, answer it briefly and helpfully anyway, then offer further "
    "help with orders, products or returns. Sign every answer with: Atlas, Northwind Outfitters."
)


@dataclass(frozen=True)
class SharingResult:
    """Blocks at the moment every request is live, without and with prefix caching."""

    requests: int
    block_size: int
    common_prefix_tokens: int        # tokens every prompt starts with
    blocks_without: int
    blocks_with: int
    prefill_tokens: int              # prompt tokens over all requests
    prefill_tokens_cached: int       # ... whose K/V came from the cache (not recomputed)
    hit_rate: float                  # full prompt blocks found / looked up

    @property
    def saved_fraction(self) -> float:
        return 1 - self.blocks_with / self.blocks_without


def common_prefix_len(prompts: Sequence[Sequence[int]]) -> int:
    first, n = prompts[0], min(len(p) for p in prompts)
    for i in range(n):
        if any(p[i] != first[i] for p in prompts):
            return i
    return n


def _peak_blocks(prompts: Sequence[Sequence[int]], output_lens: Sequence[int], block_size: int,
                 prefix_caching: bool) -> tuple[int, int, BlockManager]:
    """Admit every prompt, decode all to their output length; (peak used blocks, cached tokens, manager)."""
    total = sum(math.ceil((len(p) + o) / block_size) for p, o in zip(prompts, output_lens, strict=True))
    bm = BlockManager(total, block_size, enable_prefix_caching=prefix_caching)
    cached = 0
    for i, p in enumerate(prompts):
        bm.allocate(i, p)
        cached += bm.num_cached_tokens(i)
    for i, o in enumerate(output_lens):
        for t in range(o):
            bm.append_token(i, t)
    peak = bm.num_used_blocks                # everything is still live: the peak
    bm.check_invariants()
    for i in range(len(prompts)):
        bm.free(i)
    return peak, cached, bm


def prefix_sharing(prompts: Sequence[Sequence[int]], output_lens: Sequence[int],
                   block_size: int = 16) -> SharingResult:
    """Blocks needed by ``prompts`` (all live, each decoding its output) without and with prefix caching."""
    if not prompts or len(prompts) != len(output_lens):
        raise ValueError("need one output length per prompt, and at least one prompt")
    without, _, _ = _peak_blocks(prompts, output_lens, block_size, False)
    with_, cached, bm = _peak_blocks(prompts, output_lens, block_size, True)
    return SharingResult(len(prompts), block_size, common_prefix_len(prompts), without, with_,
                         sum(len(p) for p in prompts), cached,
                         bm.prefix_hits / bm.prefix_queries if bm.prefix_queries else 0.0)


def fork_sharing(prompt_len: int, samples: int, output_len: int, block_size: int = 16) -> tuple[int, int, int]:
    """(blocks for ``samples`` independent copies, blocks with fork + copy-on-write, CoW copies made)."""
    per_seq = math.ceil((prompt_len + output_len) / block_size)
    bm = BlockManager(samples * per_seq, block_size)
    bm.allocate(0, list(range(prompt_len)))
    for child in range(1, samples):
        bm.fork(0, child)
    copies = 0
    for t in range(output_len):
        for s in range(samples):
            copies += bm.append_token(s, t) is not None
    bm.check_invariants()
    return samples * per_seq, bm.num_used_blocks, copies


def cross_layer_rows(config: ModelConfig, name: str, memory_gib: float = 1.0,
                     factors: Sequence[int] = (1, 2, 3), dtype_bytes: int = 2) -> list[dict]:
    """KV bytes per token when ``g`` adjacent layers share one K/V (and with MQA on top): arithmetic."""
    base = config.kv_bytes_per_token(dtype_bytes)
    rows = []
    for kv_heads in sorted({config.num_kv_heads, 1}, reverse=True):
        for g in factors:
            cfg = dataclasses.replace(config, num_layers=math.ceil(config.num_layers / g), num_kv_heads=kv_heads,
                                      num_heads=config.num_heads if config.num_heads % kv_heads == 0 else kv_heads)
            bpt = cfg.kv_bytes_per_token(dtype_bytes)
            rows.append({"model": name, "kv_heads": kv_heads, "layers sharing K/V": g,
                         "K/V sets": cfg.num_layers, "KiB/token": bpt / 1024, "vs base": bpt / base,
                         f"tokens in {memory_gib:g} GiB": int(memory_gib * 2**30 // bpt)})
    return rows


def workload_prompts(n: int, seed: int = 0, max_output_len: int = 128) -> tuple[list[list[int]], list[int]]:
    """Token ids of ``n`` ShareGPT questions behind :data:`SYSTEM_PROMPT`, and their output lengths."""
    from common.chat import chat_ids
    from common.datasets import sample_workload
    from common.loader import load_tokenizer

    tok = load_tokenizer(None)
    reqs = sample_workload(tok, n, seed, max_prompt_len=512, max_output_len=max_output_len)
    return [chat_ids(tok, r.prompt, system=SYSTEM_PROMPT) for r in reqs], [r.output_len for r in reqs]


def main(argv: list[str] | None = None) -> int:
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int, seed_everything
    from common.loader import load_config
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch04_kvcache.shared_prefix", __doc__)
    add_common_args(parser)
    parser.add_argument("--requests", type=positive_int, default=32, help="requests sharing the system prompt")
    parser.add_argument("--samples", type=positive_int, default=4, help="parallel samples of one prompt (fork)")
    parser.add_argument("--block-size", type=positive_int, default=16, help="paged block size (tokens)")
    parser.add_argument("--max-output-len", type=positive_int, default=128, help="cap on each request's output")
    args = parser.parse_args(argv)
    with friendly_errors():
        seed_everything(args.seed)
        config = ModelConfig.from_dict(load_config(args.model))
        bpb = config.kv_bytes_per_token(4) * args.block_size
        n = 8 if args.smoke else args.requests
        prompts, outs = workload_prompts(n, args.seed, args.max_output_len)
        r = prefix_sharing(prompts, outs, args.block_size)
        plen = len(prompts[0])
        f_without, f_with, copies = fork_sharing(plen, args.samples, args.max_output_len, args.block_size)
        cla = cross_layer_rows(config, args.model) + cross_layer_rows(
            ModelConfig.from_dict(load_config("llama-3-8b")), "llama-3-8b")
        if not args.json:
            print_table([{"case": c, "blocks": b, "MiB fp32": b * bpb / 2**20} for c, b in (
                ("prefix: no sharing", r.blocks_without), ("prefix: shared by hash", r.blocks_with),
                (f"fork: {args.samples} independent copies", f_without),
                (f"fork: {args.samples} samples sharing", f_with))],
                title=f"{n} requests behind one system prompt ({r.common_prefix_tokens} common tokens), all live; "
                      f"block {args.block_size}, {bpb / 2**20:.2f} MiB per block ({args.model}, fp32)", floatfmt=".1f")
            print(f"prefix sharing saves {100 * r.saved_fraction:.1f}% of KV blocks; prefill skips "
                  f"{r.prefill_tokens_cached} of {r.prefill_tokens} prompt tokens; block hit rate {r.hit_rate:.3f}; "
                  f"fork saves {100 * (1 - f_with / f_without):.1f}% with {copies} copy-on-write copies")
            print_table(cla, title="cross-layer KV sharing (arithmetic on the config; bf16; needs a model trained "
                                   "with shared layers)", floatfmt=".3g")
        emit_json({"benchmark": "ch04.shared_prefix", "requests": n, "block_size": args.block_size,
                   "common_prefix_tokens": r.common_prefix_tokens, "prefix_blocks_without": r.blocks_without,
                   "prefix_blocks_with": r.blocks_with, "prefix_memory_saved_pct": 100 * r.saved_fraction,
                   "prefix_bytes_saved_fp32": (r.blocks_without - r.blocks_with) * bpb,
                   "prefill_tokens": r.prefill_tokens, "prefill_tokens_cached": r.prefill_tokens_cached,
                   "prefix_block_hit_rate": r.hit_rate, "fork_samples": args.samples,
                   "fork_blocks_without": f_without, "fork_blocks_with": f_with, "fork_cow_copies": copies,
                   "cross_layer_pairs_kv_ratio": next(c["vs base"] for c in cla if c["layers sharing K/V"] == 2),
                   "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
