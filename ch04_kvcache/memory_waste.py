"""KV memory waste, measured (book 4.3.3 PagedAttention, 4.5 memory management).

A naive cache reserves ``max_len`` slots per sequence when it starts; a paged cache reserves one block
of ``block_size`` slots at a time. We replay a seeded ShareGPT workload (``common.datasets``, lengths
from the embedded tokenizer) through both, token by token, with up to ``--max-num-seqs`` sequences live
at once (a new one starts when one finishes, as in continuous batching). The paged side is driven
through the real ``BlockManager``: at every step we sum the slots holding real tokens and the slots
reserved, and report

    utilization = sum over steps of (slots holding a token) / sum over steps of (slots reserved)

for three policies: naive (reserve ``max_len``), oracle (reserve exactly prompt + output up front, the
best a contiguous cache can do, which needs the output length in advance) and paged. Every slot costs
the same bytes, so this is also the byte utilization. vLLM's paper reports 96.3% for paged (a claim,
not measured here); our goal is >= 0.96.

It also prints KV bytes against sequence length (table + PNG; the paged cache's bytes are measured on
an allocated ``PagedKVCache``) and the longest context that fits a given KV memory budget.

    python -m ch04_kvcache.memory_waste [--smoke] [--requests 200] [--memory-gib 1]
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from ch04_kvcache.block_manager import BlockManager
from ch04_kvcache.config import ModelConfig

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}
CONTEXT_MODELS = ("smollm2-135m", "llama-3-8b", "llama-3-70b")


@dataclass(frozen=True)
class KVUsage:
    """Outcome of replaying one workload; utilizations are in [0, 1]."""

    naive: float
    oracle: float
    paged: float
    steps: int
    token_slot_steps: int            # sum over steps of slots holding a real token
    peak_blocks: int                 # most paged blocks in use at once
    peak_naive_slots: int            # most slots the naive cache reserved at once
    peak_tokens: int                 # most real tokens held at once


def simulate(lengths: Sequence[tuple[int, int]], block_size: int = 16, max_len: int = 2048,
             max_num_seqs: int = 32) -> KVUsage:
    """Replay ``(prompt_len, output_len)`` requests through naive, oracle and paged reservation."""
    if not lengths:
        raise ValueError("the workload is empty")
    if max_num_seqs < 1 or block_size < 1:
        raise ValueError("max_num_seqs and block_size must be at least 1")
    for p, o in lengths:
        if p < 1 or o < 1:
            raise ValueError(f"a request needs at least one prompt and one output token, got ({p}, {o})")
        if p + o > max_len:
            raise ValueError(f"a request of {p} + {o} tokens does not fit max_len={max_len}")
    # Enough blocks for every request at once: we measure waste, not admission.
    bm = BlockManager(sum(math.ceil((p + o) / block_size) for p, o in lengths), block_size)
    waiting = deque(enumerate(lengths))
    target: dict[int, int] = {}                    # live seq id -> tokens it holds when done
    stored = naive = oracle = paged = steps = 0
    peak_blocks = peak_naive = peak_tokens = 0
    while waiting or target:
        while waiting and len(target) < max_num_seqs:
            seq_id, (p, o) = waiting.popleft()
            bm.allocate(seq_id, [0] * p)            # prefill: the prompt's K/V
            target[seq_id] = p + o
        held = sum(bm.num_tokens(s) for s in target)
        stored += held
        paged += bm.num_used_blocks * block_size
        naive += len(target) * max_len
        oracle += sum(target.values())
        steps += 1
        peak_blocks = max(peak_blocks, bm.num_used_blocks)
        peak_naive = max(peak_naive, len(target) * max_len)
        peak_tokens = max(peak_tokens, held)
        for s in list(target):                     # one decode step: every live sequence grows by one
            if bm.num_tokens(s) >= target[s]:
                bm.free(s)
                del target[s]
            else:
                bm.append_token(s, 0)
    bm.check_invariants()
    assert bm.num_free_blocks == bm.num_blocks
    return KVUsage(stored / naive, stored / oracle, stored / paged, steps, stored, peak_blocks, peak_naive,
                   peak_tokens)


def kv_utilization(requests: Sequence, block_size: int = 16, max_len: int = 2048,
                   max_num_seqs: int = 32) -> dict[str, float]:
    """``{naive, oracle, paged}`` utilization for ``WorkloadRequest``s (or ``(prompt_len, output_len)``)."""
    lengths = [(r.prompt_len, r.output_len) if hasattr(r, "prompt_len") else (int(r[0]), int(r[1]))
               for r in requests]
    u = simulate(lengths, block_size, max_len, max_num_seqs)
    return {"naive": u.naive, "oracle": u.oracle, "paged": u.paged}


def sharegpt_lengths(n: int, seed: int = 0) -> list[tuple[int, int]]:
    """``(prompt_len, output_len)`` of ``n`` seeded ShareGPT requests, embedded tokenizer, vLLM's filters."""
    from common.datasets import sample_workload
    from common.loader import load_tokenizer

    return [(r.prompt_len, r.output_len) for r in sample_workload(load_tokenizer(None), n, seed)]


def utilization_summary(smoke: bool = False, seed: int = 0, n_requests: int | None = None,
                        block_size: int = 16, max_len: int = 2048, max_num_seqs: int = 32) -> dict:
    """What ``compare.py`` puts in its JSON line: ``paged_kv_utilization``, ``naive_kv_utilization``..."""
    n = n_requests or (24 if smoke else 200)
    u = simulate(sharegpt_lengths(n, seed), block_size, max_len, max_num_seqs)
    return {"paged_kv_utilization": u.paged, "naive_kv_utilization": u.naive,
            "oracle_kv_utilization": u.oracle, "kv_workload_requests": n, "kv_block_size": block_size,
            "kv_naive_max_len": max_len, "kv_max_num_seqs": max_num_seqs}


# ---------------------------------------------------------------------------- memory vs length
def paged_bytes_measured(config: ModelConfig, seq_len: int, block_size: int = 16, dtype: str = "fp32") -> int:
    """``nbytes`` of a real ``PagedKVCache`` with just enough blocks for ``seq_len`` tokens."""
    import torch

    from ch04_kvcache.paged_cache import PagedKVCache

    tdtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    return PagedKVCache(config, math.ceil(seq_len / block_size), block_size, "cpu", tdtype).nbytes


def memory_vs_length(config: ModelConfig, lengths: Sequence[int], block_size: int = 16, max_len: int = 2048,
                     measure_up_to: int = 2048) -> list[dict]:
    """KV bytes of one sequence per length: exact need, paged reservation, naive ``max_len`` reservation."""
    bpt = config.kv_bytes_per_token(4)
    rows = []
    for n in lengths:
        paged = math.ceil(n / block_size) * block_size * bpt
        measured = paged_bytes_measured(config, n, block_size) if n <= measure_up_to else None
        if measured is not None and measured != paged:
            raise AssertionError(f"PagedKVCache holds {measured} bytes, the formula says {paged}")
        rows.append({"seq_len": n, "need_fp32_MiB": n * bpt / 2**20, "paged_fp32_MiB": paged / 2**20,
                     "paged_measured": "yes" if measured is not None else "formula",
                     "naive_fp32_MiB": max_len * bpt / 2**20 if n <= max_len else None,  # None: does not fit
                     "need_bf16_MiB": n * config.kv_bytes_per_token(2) / 2**20})
    return rows


def longest_context(config: ModelConfig, memory_bytes: int, dtype_bytes: float,
                    block_size: int = 16) -> int:
    """Most tokens of KV that fit ``memory_bytes`` when it is handed out in whole blocks."""
    return int(memory_bytes // (config.kv_bytes_per_token(dtype_bytes) * block_size)) * block_size


def context_rows(memory_gib: float, block_size: int = 16) -> list[dict]:
    from common.loader import load_config

    rows = []
    for name in CONTEXT_MODELS:
        cfg = ModelConfig.from_dict(load_config(name))
        row: dict = {"model": name, "KiB/token fp16": cfg.kv_bytes_per_token(2) / 1024}
        for dt, nbytes in DTYPE_BYTES.items():
            if dt != "fp16":
                row[f"tokens {dt}"] = longest_context(cfg, int(memory_gib * 2**30), nbytes, block_size)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    from common.bench import stamp_dict
    from common.cli import (
        UsageError,
        add_common_args,
        friendly_errors,
        make_parser,
        positive_int,
        seed_everything,
    )
    from common.loader import load_config
    from common.paths import reports_dir
    from common.report import emit_json, print_table, save_plot

    parser = make_parser("python -m ch04_kvcache.memory_waste", __doc__)
    add_common_args(parser)
    parser.add_argument("--requests", type=positive_int, default=200, help="ShareGPT requests to replay")
    parser.add_argument("--block-size", type=positive_int, default=16, help="paged block size (tokens)")
    parser.add_argument("--max-len", type=positive_int, default=2048, help="naive cache's reservation per sequence")
    parser.add_argument("--max-num-seqs", type=positive_int, default=32, help="sequences live at once")
    parser.add_argument("--memory-gib", type=float, default=1.0, help="KV budget for the longest-context table")
    args = parser.parse_args(argv)
    with friendly_errors():
        if args.memory_gib <= 0:
            raise UsageError("--memory-gib must be positive")
        seed_everything(args.seed)
        config = ModelConfig.from_dict(load_config(args.model))
        n = 24 if args.smoke else args.requests
        lengths = sharegpt_lengths(n, args.seed)
        u = simulate(lengths, args.block_size, args.max_len, args.max_num_seqs)
        bpt = config.kv_bytes_per_token(4)
        policies = [("naive (max_len)", u.naive, u.peak_naive_slots), ("oracle (exact length)", u.oracle, None),
                    ("paged (BlockManager)", u.paged, u.peak_blocks * args.block_size)]
        if not args.json:
            print_table([{"policy": p, "utilization": util, "peak reserved MiB fp32":
                          (slots * bpt / 2**20) if slots else "-"} for p, util, slots in policies],
                        title=f"KV utilization, {n} ShareGPT requests (seed {args.seed}), {args.max_num_seqs} live, "
                              f"block {args.block_size}, naive max_len {args.max_len}; peak real tokens "
                              f"{u.peak_tokens} = {u.peak_tokens * bpt / 2**20:.1f} MiB", floatfmt=".4f")
        lens = [128, 256, 512, 1024, 2048, 4096, 8192]
        rows = memory_vs_length(config, lens, args.block_size, args.max_len, 512 if args.smoke else 2048)
        ctx = context_rows(args.memory_gib, args.block_size)
        if not args.json:
            print_table([{k: "does not fit" if v is None else v for k, v in r.items()} for r in rows], title=f"KV memory of one sequence ({args.model}, {bpt:.0f} bytes/token fp32)",
                        floatfmt=".2f")
            print_table(ctx, title=f"longest context in {args.memory_gib:g} GiB of KV (block {args.block_size})",
                        floatfmt=".0f")
        png = save_plot(reports_dir("ch04") / "kv_memory_vs_length.png",
                        {f"naive fp32 ({args.max_len} reserved)": (
                            [r["seq_len"] for r in rows if r["naive_fp32_MiB"] is not None],
                            [r["naive_fp32_MiB"] for r in rows if r["naive_fp32_MiB"] is not None]),
                         "paged fp32 (whole blocks)": (lens, [r["paged_fp32_MiB"] for r in rows]),
                         "bf16 need": (lens, [r["need_bf16_MiB"] for r in rows])},
                        title=f"KV cache of one sequence, {args.model}", xlabel="sequence length (tokens)",
                        ylabel="MiB", logx=True, logy=True)
        if not args.json:
            print(f"plot: {png}")
        emit_json({"benchmark": "ch04.memory_waste", "paged_kv_utilization": u.paged,
                   "naive_kv_utilization": u.naive, "oracle_kv_utilization": u.oracle, "requests": n,
                   "block_size": args.block_size, "max_len": args.max_len, "max_num_seqs": args.max_num_seqs,
                   "mean_prompt_len": sum(p for p, _ in lengths) / n, "mean_output_len": sum(o for _, o in lengths) / n,
                   "kv_bytes_per_token_fp32": bpt, "memory_gib": args.memory_gib,
                   "longest_context": {r["model"]: {k: v for k, v in r.items() if k.startswith("tokens")} for r in ctx},
                   "plot": str(png), "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
