"""INT8 KV cache (book 4.4.4): per-token, per-head scales; half the bytes of fp16, a quarter of fp32.

Each (token, head) vector of K and of V is stored as 8-bit integers ``q = round(x / s)`` with its own
scale ``s = max|x| / 127`` (fp16). One scale per ``head_dim`` values adds 2 bytes to 64, so the cache
takes (64 + 2) / 128 = 52% of fp16 for the embedded model. Keys have per-channel outliers that a
per-tensor scale would smear over everything; a scale per token and head keeps the error local.

``Int8KVCache`` has the contiguous cache's interface, so ``generate(model, ids, n, cache="int8")`` works.
This is the memory half of the trade: it dequantizes what it reads on every step in plain torch (slower
than fp32 here); a fused kernel that reads int8 directly is what makes it faster on a GPU.

    python -m ch04_kvcache.int8_kv --smoke       # memory ratio, perplexity delta, greedy agreement
"""

from __future__ import annotations

import torch

from ch04_kvcache.config import ModelConfig
from ch04_kvcache.kv_cache import ContiguousKVCache, Step

SCALE_DTYPE = torch.float16


def quantize_per_token_head(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (..., D) -> int8 (..., D) and fp16 scales (..., 1), symmetric, one scale per last-dim vector."""
    scale = (x.abs().amax(-1, keepdim=True).float() / 127.0).to(SCALE_DTYPE)
    scale = scale.clamp_min(torch.finfo(SCALE_DTYPE).tiny)  # all-zero vectors stay zero, no 0/0
    q = torch.round(x.float() / scale.float()).clamp_(-127, 127).to(torch.int8)
    return q, scale


def dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (q.to(torch.float32) * scale.to(torch.float32)).to(dtype)


class Int8KVCache(ContiguousKVCache):
    """``ContiguousKVCache`` whose K/V are int8 with a fp16 scale per (token, head)."""

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        super().__init__(config, batch_size, max_len, device, torch.int8)
        self.compute_dtype = dtype  # what attention reads after dequantization
        shape = (config.num_layers, batch_size, config.num_kv_heads, max_len, 1)
        self.k_scale = torch.zeros(shape, device=self.device, dtype=SCALE_DTYPE)
        self.v_scale = torch.zeros(shape, device=self.device, dtype=SCALE_DTYPE)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, step: Step
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize and store ``k, v`` (B, Hkv, T, D); return dequantized K/V (B, Hkv, kv_len, D)."""
        qk, sk = quantize_per_token_head(k)
        qv, sv = quantize_per_token_head(v)
        self._write(self.k[layer], self.v[layer], qk, qv, step)
        self._write(self.k_scale[layer], self.v_scale[layer], sk, sv, step)
        n = step.kv_len
        return (dequantize(self.k[layer, :, :, :n], self.k_scale[layer, :, :, :n], self.compute_dtype),
                dequantize(self.v[layer, :, :, :n], self.v_scale[layer, :, :, :n], self.compute_dtype))

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes + self.k_scale.nbytes + self.v_scale.nbytes


def bytes_per_token(config: ModelConfig, kind: str) -> int:
    """Measured from a one-token cache's tensors: ``fp32``, ``fp16`` or ``int8`` (scales included)."""
    if kind == "int8":
        return Int8KVCache(config, 1, 1).nbytes
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[kind]
    return ContiguousKVCache(config, 1, 1, dtype=dtype).nbytes


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.cli_model import model_from_args
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.device import dtype_name
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch04_kvcache.int8_kv", __doc__)
    add_common_args(parser)
    parser.add_argument("--tokens", type=positive_int, default=8192, help="evaluation tokens for perplexity")
    parser.add_argument("--new-tokens", type=positive_int, default=32, help="greedy tokens per fixed prompt")
    args = parser.parse_args(argv)
    with friendly_errors():
        model = model_from_args(args)
        res = evaluate(model, args.model, 256 if args.smoke else args.tokens, 8 if args.smoke else args.new_tokens,
                       n_prompts=2 if args.smoke else None)
        if not args.json:
            print_table(res["memory"], title="KV cache bytes per token (measured from the cache tensors)")
            print(f"perplexity over {res['eval_tokens']} tokens: {res['base_cache']} cache {res['ppl_base']:.4f}, int8 cache "
                  f"{res['ppl_int8']:.4f} ({res['int8_kv_ppl_delta_pct']:+.3f}%); greedy agreement "
                  f"{res['greedy_identical']}/{res['greedy_prompts']} prompts identical, mean common prefix "
                  f"{res['greedy_prefix_fraction']:.2%}")
        emit_json({"benchmark": "ch04.int8_kv", **res, "hardware": stamp_dict(dtype=dtype_name(model.dtype))})
    return 0


def evaluate(model, model_spec: str, eval_tokens: int, new_tokens: int, n_prompts: int | None = None) -> dict:
    """Memory ratios, perplexity delta and greedy agreement of the INT8 cache against the model-dtype one."""
    from ch04_kvcache.quality import AGREEMENT_PROMPTS, greedy_agreement, greedy_outputs, perplexity
    from common.chat import chat_ids
    from common.datasets import eval_token_ids
    from common.device import dtype_name
    from common.loader import load_tokenizer

    cfg = model.config
    per = {k: bytes_per_token(cfg, k) for k in ("fp32", "fp16", "int8")}
    memory = [{"cache": k, "bytes_per_token": v, "vs_fp16": v / per["fp16"], "vs_fp32": v / per["fp32"]}
              for k, v in per.items()]
    tok = load_tokenizer(model_spec)
    ids = eval_token_ids(tok, eval_tokens)

    def contiguous(m, n):
        return ContiguousKVCache(m.config, 1, n, m.device, m.dtype)

    def int8(m, n):
        return Int8KVCache(m.config, 1, n, m.device, m.dtype)

    base = perplexity(model, ids, cache_factory=contiguous)
    quant = perplexity(model, ids, cache_factory=int8)
    prompts = [chat_ids(tok, p) for p in AGREEMENT_PROMPTS[:n_prompts]]
    agree = greedy_agreement(greedy_outputs(model, prompts, new_tokens, "contiguous"),
                             greedy_outputs(model, prompts, new_tokens, "int8"))
    return {"memory": memory, "int8_vs_fp16_bytes": per["int8"] / per["fp16"],
            "int8_vs_fp32_bytes": per["int8"] / per["fp32"], "eval_tokens": base.tokens_scored,
            "base_cache": dtype_name(model.dtype), "ppl_base": base.ppl, "ppl_int8": quant.ppl,
            "int8_kv_ppl_delta_pct": 100 * (quant.ppl - base.ppl) / base.ppl,
            "greedy_prefix_fraction": agree.mean_prefix_fraction, "greedy_identical": agree.identical,
            "greedy_prompts": agree.prompts, "greedy_new_tokens": new_tokens}


if __name__ == "__main__":
    raise SystemExit(main())
