"""Chapter 4's 常见误区 (common pitfalls), each measured with this chapter's code.

1. "Reserve ``max_model_len`` per request, memory is memory": seeded ShareGPT requests replayed through
   ``memory_waste.simulate`` (the real ``BlockManager``): the share of reserved KV slots that never
   hold a token with contiguous ``max_len`` reservation vs paged blocks, and how many more sequences
   the same memory holds paged.
2. "Bigger KV blocks are free (fewer blocks, less bookkeeping)": the same replay at block size 16 vs
   256; the last, partly filled block of every sequence is reserved but empty.
3. "The KV cache is small next to the weights": bytes of a real ``PagedKVCache`` for one 2,048-token
   sequence of the embedded model, times a batch of 32, against its fp32 weights (ch02's counter); and
   Llama-3-8B (preset config) at 32 x 8K in bf16.

    python -m ch04_kvcache.pitfalls --smoke
    python -m ch04_kvcache.pitfalls
"""

from __future__ import annotations

import sys

from ch02_gpu.memory import Arch, count_params, weights_bytes
from ch04_kvcache.config import ModelConfig
from ch04_kvcache.memory_waste import paged_bytes_measured, sharegpt_lengths, simulate
from common.loader import EMBEDDED, load_config
from common.pitfalls import Pitfall, pitfalls_main

CH = "ch04"
MAX_LEN = 2048
MAX_NUM_SEQS = 32


def reservation_pitfalls(lengths: list[tuple[int, int]]) -> list[Pitfall]:
    small, big = 16, 256
    u = simulate(lengths, small, MAX_LEN, MAX_NUM_SEQS)
    u_big = simulate(lengths, big, MAX_LEN, MAX_NUM_SEQS)
    naive_waste, paged_waste = 1 - u.naive, 1 - u.paged
    # same memory, how many sequences: a contiguous slot costs max_len, a paged one its blocks on average
    seqs_ratio = u.paged / u.naive
    contiguous = Pitfall(
        CH, "reserving max_model_len per request (contiguous KV)",
        "a contiguous max_len buffer per sequence costs no more than paging",
        {"requests": len(lengths), "max_len": MAX_LEN, "naive_waste_share": naive_waste,
         "oracle_waste_share": 1 - u.oracle, "paged_waste_share": paged_waste,
         "paged_vs_naive_sequences": seqs_ratio},
        f"{naive_waste:.0%} of the reserved KV slots never held a token (paged: {paged_waste:.1%}; even "
        f"reserving each request's exact final length up front wastes {1 - u.oracle:.0%}): the same "
        f"memory holds {seqs_ratio:.1f}x more concurrent sequences when paged")
    blocks = Pitfall(
        CH, "bigger KV blocks are free",
        f"block size {big} instead of {small} only means fewer blocks to manage",
        {"block_small": small, "block_big": big, "paged_util_small": u.paged, "paged_util_big": u_big.paged,
         "peak_blocks_small": u.peak_blocks, "peak_blocks_big": u_big.peak_blocks},
        f"utilisation falls from {u.paged:.1%} at block {small} to {u_big.paged:.1%} at block {big}: the "
        f"last, partly filled block of each sequence is reserved but empty, {1 - u_big.paged / u.paged:.0%} "
        f"of the KV memory lost to it")
    return [contiguous, blocks]


def kv_vs_weights_pitfall(smoke: bool) -> Pitfall:
    cfg_dict = load_config(EMBEDDED)
    cfg = ModelConfig.from_dict(cfg_dict)
    ctx = 256 if smoke else MAX_LEN
    one_seq = paged_bytes_measured(cfg, ctx)  # an allocated PagedKVCache's nbytes
    batch_kv = one_seq * MAX_NUM_SEQS * (MAX_LEN // ctx)
    weights = weights_bytes(count_params(Arch.from_config(cfg_dict, EMBEDDED)), "fp32")
    big_dict = load_config("llama-3-8b")
    big = ModelConfig.from_dict(big_dict)
    big_kv = big.kv_bytes_per_token(2) * 8192 * MAX_NUM_SEQS
    big_w = weights_bytes(count_params(Arch.from_config(big_dict, "llama-3-8b")), "bf16")
    return Pitfall(
        CH, "the KV cache is small next to the weights",
        "memory is mostly weights; the KV cache is a rounding error",
        {"smollm2_kv_gb_32x2048": batch_kv / 1e9, "smollm2_weights_gb": weights / 1e9,
         "smollm2_kv_over_weights": batch_kv / weights, "llama3_8b_kv_gb_32x8k": big_kv / 1e9,
         "llama3_8b_weights_gb": big_w / 1e9, "llama3_8b_kv_over_weights": big_kv / big_w},
        f"32 sequences x {MAX_LEN} tokens of the embedded model hold {batch_kv / 1e9:.2f} GB of fp32 KV, "
        f"{batch_kv / weights:.1f}x its {weights / 1e9:.2f} GB of weights; Llama-3-8B at 32 x 8K in bf16 "
        f"needs {big_kv / 1e9:.0f} GB of KV, {big_kv / big_w:.1f}x its weights: the batch a card serves is "
        f"set by the KV cache")


def run(smoke: bool) -> list[Pitfall]:
    lengths = sharegpt_lengths(24 if smoke else 200, 0)
    return [*reservation_pitfalls(lengths), kv_vs_weights_pitfall(smoke)]


def main(argv: list[str] | None = None) -> int:
    return pitfalls_main("python -m ch04_kvcache.pitfalls", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
