"""MHA vs MQA vs GQA (book 4.4.1, 4.4.2): KV bytes per token, and converting a model's KV heads.

KV bytes per token = 2 (K and V) x layers x kv_heads x head_dim x bytes per element. Multi-head attention
keeps one KV head per query head, multi-query attention one in all, grouped-query attention one per
group. The embedded model (9 query heads) is GQA with 3 KV heads.

:func:`convert_kv_heads` rewrites a model's K/V projections to a different number of KV heads:

* fewer (3 -> 1, MQA): mean-pool the K and V projection weights of the heads in each group (the recipe of
  the GQA paper, Ainslie et al. 2023, *before* its up-training step). We do **not** retrain, so the
  measured quality cost below is the un-retrained cost; the paper recovers most of it with ~5% of the
  pre-training compute.
* more (3 -> 9, MHA): repeat each KV head for its group; exactly the same function, 3x the cache.

    python -m ch04_kvcache.gqa --smoke
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ch04_kvcache.config import ModelConfig
from ch04_kvcache.kv_cache import ContiguousKVCache
from ch04_kvcache.model import LlamaModel


def kv_bytes_per_token_formula(cfg: ModelConfig, kv_heads: int, bytes_per_element: int) -> int:
    return 2 * cfg.num_layers * kv_heads * cfg.head_dim * bytes_per_element


def kv_bytes_per_token_measured(cfg: ModelConfig, kv_heads: int, dtype: torch.dtype) -> int:
    """Bytes of a real one-token contiguous cache built for ``kv_heads`` KV heads."""
    return ContiguousKVCache(replace(cfg, num_kv_heads=kv_heads), 1, 1, dtype=dtype).nbytes


def attention_variants(cfg: ModelConfig) -> dict[str, int]:
    """KV-head counts of MHA, this model's own layout, and MQA."""
    out = {"MHA": cfg.num_heads}
    if 1 < cfg.num_kv_heads < cfg.num_heads:
        out[f"GQA ({cfg.num_kv_heads} kv heads)"] = cfg.num_kv_heads
    out["MQA"] = 1
    return out


def _regroup(w: torch.Tensor, old: int, new: int, head_dim: int) -> torch.Tensor:
    """Projection rows (old*D, ...) -> (new*D, ...): mean over merged heads, or repeat for split ones."""
    heads = w.reshape(old, head_dim, *w.shape[1:])  # (old, D, ...)
    if new < old:
        heads = heads.reshape(new, old // new, head_dim, *w.shape[1:]).mean(1)  # (new, D, ...)
    else:
        heads = heads.repeat_interleave(new // old, dim=0)
    return heads.reshape(new * head_dim, *w.shape[1:]).contiguous()


@torch.no_grad()
def convert_kv_heads(model: LlamaModel, kv_heads: int) -> LlamaModel:
    """A copy of ``model`` with ``kv_heads`` KV heads (mean-pooled or repeated K/V projections)."""
    cfg = model.config
    old = cfg.num_kv_heads
    if kv_heads < 1 or cfg.num_heads % kv_heads or (old % kv_heads and kv_heads % old):
        raise ValueError(f"cannot regroup {old} KV heads into {kv_heads} (query heads: {cfg.num_heads})")
    new_cfg = replace(cfg, num_kv_heads=kv_heads)
    state = {}
    for name, t in model.state_dict().items():
        if name.endswith(("k_proj.weight", "v_proj.weight", "k_proj.bias", "v_proj.bias")):
            t = _regroup(t, old, kv_heads, cfg.head_dim)
        state[name] = t.clone()
    with torch.device("meta"):
        new = LlamaModel(new_cfg)
    new.load_state_dict(state, strict=True, assign=True)
    if new_cfg.tie_word_embeddings:
        new.lm_head.weight = new.embed_tokens.weight
    new.rotary.inv_freq = model.rotary.inv_freq.clone()
    return new.eval()


def memory_rows(cfg: ModelConfig, dtype: torch.dtype = torch.float16) -> list[dict]:
    elem = torch.empty((), dtype=dtype).element_size()
    rows = []
    for name, kvh in attention_variants(cfg).items():
        formula = kv_bytes_per_token_formula(cfg, kvh, elem)
        measured = kv_bytes_per_token_measured(cfg, kvh, dtype)
        rows.append({"attention": name, "kv_heads": kvh, "bytes_per_token_formula": formula,
                     "bytes_per_token_measured": measured, "vs_mha": measured / kv_bytes_per_token_measured(
                         cfg, cfg.num_heads, dtype), "tokens_per_gib": 2**30 // measured})
    return rows


def evaluate(model: LlamaModel, model_spec: str, eval_tokens: int, new_tokens: int,
             n_prompts: int | None = None) -> dict:
    """Perplexity and greedy agreement of the MQA conversion (and the lossless MHA expansion)."""
    from ch04_kvcache.quality import AGREEMENT_PROMPTS, greedy_agreement, greedy_outputs, perplexity
    from common.chat import chat_ids
    from common.datasets import eval_token_ids
    from common.loader import load_tokenizer

    tok = load_tokenizer(model_spec)
    ids = eval_token_ids(tok, eval_tokens)
    prompts = [chat_ids(tok, p) for p in AGREEMENT_PROMPTS[:n_prompts]]
    ref_out = greedy_outputs(model, prompts, new_tokens)
    base = perplexity(model, ids)
    rows = [{"model": f"original ({model.config.num_kv_heads} kv heads)", "ppl": base.ppl, "ppl_delta_pct": 0.0,
             "greedy_prefix_fraction": 1.0, "greedy_identical": len(prompts)}]
    for label, kvh in (("MHA, heads repeated (exact)", model.config.num_heads), ("MQA, mean-pooled, un-retrained", 1)):
        variant = convert_kv_heads(model, kvh)
        p = perplexity(variant, ids)
        agree = greedy_agreement(ref_out, greedy_outputs(variant, prompts, new_tokens))
        rows.append({"model": label, "ppl": p.ppl, "ppl_delta_pct": 100 * (p.ppl - base.ppl) / base.ppl,
                     "greedy_prefix_fraction": agree.mean_prefix_fraction, "greedy_identical": agree.identical})
    return {"quality": rows, "eval_tokens": base.tokens_scored, "prompts": len(prompts), "new_tokens": new_tokens}


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.cli_model import model_from_args
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.device import dtype_name
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch04_kvcache.gqa", __doc__)
    add_common_args(parser)
    parser.add_argument("--tokens", type=positive_int, default=4096, help="evaluation tokens for perplexity")
    parser.add_argument("--new-tokens", type=positive_int, default=32, help="greedy tokens per fixed prompt")
    args = parser.parse_args(argv)
    with friendly_errors():
        model = model_from_args(args)
        mem = memory_rows(model.config)
        res = evaluate(model, args.model, 256 if args.smoke else args.tokens, 8 if args.smoke else args.new_tokens,
                       n_prompts=2 if args.smoke else None)
        if not args.json:
            print_table(mem, title="KV cache per token, fp16 (formula vs measured from the cache tensors)")
            print_table(res["quality"], title=f"quality, {res['eval_tokens']} eval tokens, {res['prompts']} prompts "
                                              f"x {res['new_tokens']} greedy tokens (no retraining)")
        mqa = res["quality"][-1]
        emit_json({"benchmark": "ch04.gqa", "memory_fp16": mem, **res, "mqa_ppl_delta_pct": mqa["ppl_delta_pct"],
                   "mqa_greedy_prefix_fraction": mqa["greedy_prefix_fraction"], "retrained": False,
                   "hardware": stamp_dict(dtype=dtype_name(model.dtype))})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
