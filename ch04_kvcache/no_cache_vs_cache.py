"""Why cache K/V (book 4.2, 4.6): generation without a cache vs with one, as the output grows.

Without a cache every step re-runs the model over the whole prefix, so step ``i`` costs ``prompt + i``
tokens of projections and the total grows quadratically with the generated length; with a cache each
step processes one new token and only attention still reads the (growing) prefix. This script runs both
on the same prompt, one step of each in turn (lockstep, so machine noise hits both alike), checks the
greedy tokens are identical, and reports wall time, speedup and matmul
FLOPs (counted analytically from the config) at each generated length: a table, a PNG plot in
``reports/ch04/`` and a final JSON line.

    python -m ch04_kvcache.no_cache_vs_cache              # up to 256 new tokens (a few minutes on 2 cores)
    python -m ch04_kvcache.no_cache_vs_cache --smoke      # seconds
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ch04_kvcache.config import ModelConfig
from ch04_kvcache.generate import make_stepper
from ch04_kvcache.model import LlamaModel
from common.device import synchronize

LONG_PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."


def layer_matmul_params(cfg: ModelConfig) -> int:
    """Weights one token multiplies through in one layer: q, k, v, o projections and the SwiGLU MLP."""
    h, d = cfg.hidden_size, cfg.head_dim
    attn = h * cfg.num_heads * d * 2 + h * cfg.num_kv_heads * d * 2
    return attn + 3 * h * cfg.intermediate_size


def forward_flops(cfg: ModelConfig, new_tokens: int, context_len: int, logits: int = 1) -> float:
    """FLOPs (2 per multiply-add) to process ``new_tokens`` whose context ends at ``context_len``.

    Token ``i`` of the new ones attends over ``context_len - new_tokens + i + 1`` keys: QK^T and AV cost
    ``2 * 2 * heads * head_dim`` FLOPs per key. ``logits`` positions are projected to the vocabulary.
    """
    proj = 2 * cfg.num_layers * layer_matmul_params(cfg) * new_tokens
    first = context_len - new_tokens + 1
    keys = (first + context_len) * new_tokens / 2  # sum of an arithmetic series
    attn = 4 * cfg.num_layers * cfg.num_heads * cfg.head_dim * keys
    return proj + attn + 2 * cfg.hidden_size * cfg.vocab_size * logits


def generation_flops(cfg: ModelConfig, prompt_len: int, new_tokens: int, cached: bool) -> float:
    """Total FLOPs to generate ``new_tokens`` after a prompt: prefill + one forward per further token."""
    total = forward_flops(cfg, prompt_len, prompt_len)
    for i in range(1, new_tokens):
        ctx = prompt_len + i
        total += forward_flops(cfg, 1 if cached else ctx, ctx)
    return total


@dataclass
class Trace:
    """One cache kind's greedy run: ``seconds[0]`` is the prefill, ``seconds[i]`` decode step i."""

    tokens: list[int]
    seconds: list[float]

    def cumulative(self, n: int) -> float:
        """Wall time to produce the first ``n`` tokens."""
        return sum(self.seconds[:n])

    def decode_tokens_per_s(self) -> float:
        return (len(self.seconds) - 1) / sum(self.seconds[1:])


@torch.inference_mode()
def lockstep(model: LlamaModel, prompt_ids: list[int], max_new_tokens: int, kinds: tuple[str, ...],
             block_size: int = 16) -> dict[str, Trace]:
    """Greedy generation with several caches advanced one step at a time, side by side.

    Each kind continues from its own tokens. Interleaving the steps (order alternating) exposes every kind
    to the same machine conditions, which matters on a shared CPU where load changes minute to minute.
    """
    steppers = {k: make_stepper(model, k, len(prompt_ids) + max_new_tokens, block_size) for k in kinds}
    traces = {k: Trace([], []) for k in kinds}
    for i in range(max_new_tokens):
        for k in (kinds if i % 2 == 0 else kinds[::-1]):
            new = list(prompt_ids) if i == 0 else [traces[k].tokens[-1]]
            t0 = time.perf_counter()
            nxt = int(torch.argmax(steppers[k].step(new)))
            synchronize(model.device)
            traces[k].seconds.append(time.perf_counter() - t0)
            traces[k].tokens.append(nxt)
    return traces


@dataclass
class Comparison:
    prompt_len: int
    lengths: list[int]
    rows: list[dict]
    tokens_identical: bool  # every kind's tokens equal the no-cache tokens
    speedup_at_max: float
    traces: dict[str, Trace]


def compare(model: LlamaModel, prompt_ids: list[int], max_new_tokens: int, lengths: list[int] | None = None,
            kinds: tuple[str, ...] = ("none", "contiguous")) -> Comparison:
    """Run the kinds in lockstep (after a short warm-up) and tabulate no cache vs ``kinds[1]`` by length."""
    if kinds[0] != "none" or len(kinds) < 2:
        raise ValueError("kinds must start with 'none' followed by at least one cache")
    lockstep(model, prompt_ids, 4, kinds)  # warm-up: allocator, thread pool, first-call overheads
    traces = lockstep(model, prompt_ids, max_new_tokens, kinds)
    ref, got = traces["none"], traces[kinds[1]]
    lengths = lengths or [n for n in (1, 8, 16, 32, 64, 128, 256, 512, 1024) if n <= max_new_tokens]
    if max_new_tokens not in lengths:
        lengths.append(max_new_tokens)
    cfg, p = model.config, len(prompt_ids)
    rows = []
    for n in lengths:
        t_none, t_kv = ref.cumulative(n), got.cumulative(n)
        f_none, f_kv = generation_flops(cfg, p, n, False), generation_flops(cfg, p, n, True)
        rows.append({"new_tokens": n, "no_cache_s": t_none, "kv_cache_s": t_kv, "speedup": t_none / t_kv,
                     "no_cache_gflop": f_none / 1e9, "kv_cache_gflop": f_kv / 1e9, "flop_ratio": f_none / f_kv})
    identical = all(traces[k].tokens == ref.tokens for k in kinds[1:])
    return Comparison(p, lengths, rows, identical, rows[-1]["speedup"], traces)


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.cli_model import model_from_args
    from common.bench import stamp_dict
    from common.chat import chat_ids
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.device import dtype_name
    from common.loader import load_tokenizer
    from common.paths import reports_dir
    from common.report import emit_json, print_table, save_plot

    parser = make_parser("python -m ch04_kvcache.no_cache_vs_cache", __doc__)
    add_common_args(parser)
    parser.add_argument("--max-new-tokens", type=positive_int, default=256, help="longest generation measured")
    parser.add_argument("--prompt", default=LONG_PROMPT, help="user message (chat template applied)")
    args = parser.parse_args(argv)
    with friendly_errors():
        model = model_from_args(args)
        prompt = chat_ids(load_tokenizer(args.model), args.prompt)
        n = 16 if args.smoke else args.max_new_tokens
        res = compare(model, prompt, n)
        if not args.json:
            print_table(res.rows, title=f"no cache vs KV cache, prompt {res.prompt_len} tokens, greedy, batch 1")
            print(f"greedy tokens identical: {res.tokens_identical}")
        xs = [r["new_tokens"] for r in res.rows]
        plot = save_plot(reports_dir("ch04") / "no_cache_vs_cache.png",
                         {"no cache": (xs, [r["no_cache_s"] for r in res.rows]),
                          "KV cache": (xs, [r["kv_cache_s"] for r in res.rows])},
                         title="Generation time vs generated length (batch 1)", xlabel="new tokens",
                         ylabel="seconds")
        emit_json({"benchmark": "ch04.no_cache_vs_cache", "tokens_identical": res.tokens_identical,
                   "new_tokens": n, "prompt_len": res.prompt_len, "speedup_kv_cache": res.speedup_at_max,
                   "flop_ratio": res.rows[-1]["flop_ratio"], "rows": res.rows, "plot": str(plot),
                   "hardware": stamp_dict(dtype=dtype_name(model.dtype))})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
