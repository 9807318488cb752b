"""Chapter 4's practical checklist (实战检查清单): will the KV cache hold your sequences, and at what waste?

    python -m ch04_kvcache.checklist                                         # the embedded model's defaults
    python -m ch04_kvcache.checklist --model llama-3-8b --kv-dtype bf16 --kv-cache-gib 16 \\
        --max-model-len 8192 --max-num-seqs 64 --avg-len 1500 --shared-prefix 600

Items: the context length against the model's trained positions, how many sequences the KV budget holds at
full length and at your average length (paged allocation is what makes the second number reachable), the
block size's internal fragmentation at your average length, prefix caching when requests share a prefix
(blocks it saves), and whether the C++ paged-decode operator can be built here. The KV bytes per token come
from ch02's formula (KV heads, not hidden size). Exit code 1 when an item FAILs.
"""

from __future__ import annotations

import sys

from ch02_gpu.memory import KV_BITS, Arch, kv_bytes_per_token
from ch02_gpu.vram import load_arch
from common.checklist import FAIL, OK, WARN, Check, add_checklist_args, report
from common.cli import friendly_errors, make_parser, positive_int
from common.cpp_ext import cpp_toolchain_problem
from common.loader import EMBEDDED, load_config

GIB = 1 << 30


def check_context(max_model_len: int, trained: int | None) -> Check:
    if trained is None:
        return Check("context", WARN, f"max-model-len {max_model_len}; the config states no max_position_embeddings",
                     "check the model card for the context it was trained on.")
    detail = f"max-model-len {max_model_len} of the {trained} positions the model was trained on"
    if max_model_len > trained:
        return Check("context", FAIL, detail, f"lower --max-model-len to {trained} or use a model with a longer "
                     "context (RoPE scaling changes the model, not just a setting).")
    return Check("context", OK, detail)


def check_kv_budget(per_token: int, budget_bytes: int, max_model_len: int, max_num_seqs: int, avg_len: int) -> Check:
    full = budget_bytes // max(1, per_token * max_model_len)
    typical = budget_bytes // max(1, per_token * avg_len)
    detail = (f"{per_token / 1024:.1f} KiB per token: {budget_bytes / GIB:.2f} GiB holds {full} sequences at "
              f"{max_model_len} tokens, {typical} at your average {avg_len}, for max-num-seqs {max_num_seqs}")
    if full < 1:
        return Check("kv-budget", FAIL, detail, "not even one full-length sequence fits: raise --kv-cache-gib, "
                     "lower --max-model-len, or use an int8 KV cache (ch04 int8_kv).")
    if typical < max_num_seqs:
        return Check("kv-budget", WARN, detail, "at your average length the batch cannot fill: expect preemptions; "
                     "lower --max-num-seqs, raise the budget, or halve KV bytes with int8.")
    if full < max_num_seqs:
        return Check("kv-budget", OK, detail + " (a contiguous cache reserving max-model-len each would hold "
                     f"only {full}: paged allocation is what fits them)")
    return Check("kv-budget", OK, detail)


def check_block_size(block_size: int, avg_len: int) -> Check:
    waste = (block_size / 2) / max(1, avg_len)  # the last block is half empty on average
    detail = f"block size {block_size}: ~{block_size / 2:g} empty slots per sequence, {waste:.1%} at {avg_len} tokens"
    if block_size & (block_size - 1):
        return Check("block-size", WARN, detail, "use a power of two (16 is vLLM's GPU default, 128 its CPU one).")
    if waste > 0.10:
        return Check("block-size", WARN, detail, "short sequences waste over 10% in their last block: use a "
                     "smaller block size.")
    return Check("block-size", OK, detail)


def check_prefix_caching(shared_prefix: int, block_size: int, max_num_seqs: int, enabled: bool) -> Check:
    if shared_prefix <= 0:
        return Check("prefix-cache", OK, "no shared prefix stated (--shared-prefix): nothing to share")
    shared_blocks = shared_prefix // block_size
    saved = shared_blocks * (max_num_seqs - 1)
    detail = (f"{shared_prefix} shared prefix tokens = {shared_blocks} full blocks; sharing them saves "
              f"{saved} blocks and their prefill across {max_num_seqs} sequences")
    if not enabled:
        return Check("prefix-cache", WARN, detail, "turn prefix caching on (ch05 EngineConfig "
                     "enable_prefix_caching, vLLM --enable-prefix-caching).")
    if shared_blocks == 0:
        return Check("prefix-cache", WARN, detail, "only whole blocks are shared: the prefix is shorter than one "
                     "block; use a smaller block size.")
    return Check("prefix-cache", OK, detail)


def check_paged_kernel(problem: str | None) -> Check:
    if problem:
        return Check("paged-kernel", WARN, f"the C++ paged-decode operator cannot be built: {problem}",
                     "install it; until then decode gathers K/V with torch (same tokens, slower).")
    return Check("paged-kernel", OK, "a C++ toolchain is here: decode reads K/V in place through ch04's operator")


def run_checks(args) -> list[Check]:
    arch: Arch = load_arch(args.model)
    cfg = load_config(args.model)
    cfg = cfg.get("text_config", cfg)
    trained = cfg.get("max_position_embeddings")
    per_token = kv_bytes_per_token(arch, args.kv_dtype)
    return [
        check_context(args.max_model_len, int(trained) if trained else None),
        check_kv_budget(per_token, int(args.kv_cache_gib * GIB), args.max_model_len, args.max_num_seqs,
                        min(args.avg_len, args.max_model_len)),
        check_block_size(args.block_size, args.avg_len),
        check_prefix_caching(args.shared_prefix, args.block_size, args.max_num_seqs, args.prefix_caching),
        check_paged_kernel(cpp_toolchain_problem()),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch04_kvcache.checklist", __doc__)
    parser.add_argument("--model", default=EMBEDDED, help="preset, local folder or hub id")
    parser.add_argument("--kv-dtype", default="fp32", choices=sorted(KV_BITS), help="KV cache element type")
    parser.add_argument("--kv-cache-gib", type=float, default=0.5, help="memory for the KV cache (ch05/ch08 "
                        "engine default 512 MiB; vLLM-CPU: VLLM_CPU_KVCACHE_SPACE)")
    parser.add_argument("--max-model-len", type=positive_int, default=2048, help="longest sequence allowed")
    parser.add_argument("--max-num-seqs", type=positive_int, default=32, help="sequences in one batch")
    parser.add_argument("--avg-len", type=positive_int, default=512, help="typical prompt + output tokens")
    parser.add_argument("--block-size", type=positive_int, default=16, help="tokens per KV block")
    parser.add_argument("--shared-prefix", type=int, default=0, help="tokens every request shares (system prompt)")
    parser.add_argument("--prefix-caching", action="store_true", help="prefix caching is on")
    add_checklist_args(parser)
    args = parser.parse_args(argv)
    if args.kv_cache_gib <= 0:
        parser.error("--kv-cache-gib must be > 0")
    with friendly_errors():
        return report("chapter 4 checklist: context, KV budget, blocks, prefix sharing, the decode operator",
                      run_checks(args), json_only=args.json)


if __name__ == "__main__":
    sys.exit(main())
