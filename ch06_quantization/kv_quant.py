"""KV-cache quantization: challenges and limits, measured (book 6.5).

ch04 built the INT8 KV cache (``ch04_kvcache.int8_kv``: symmetric, one fp16 scale per token and head).
Here we look at *why* that granularity: we capture the real post-RoPE keys and values of the embedded
model on held-out text (ch04's contiguous cache holds them after a prefill) and measure

* outliers: per-channel absmax of K over the median channel's -- keys have a few channels with large
  magnitude (RoPE pairs that rotate slowly), values do not;
* the round-trip error of int8 and int4 at four granularities: per tensor (one scale per layer), per
  head, per token-and-head (ch04's choice), per channel (KIVI's choice for keys);
* bytes per token of each choice (scales included, fp16 scales).

Run ``python -m ch06_quantization.kv_quant [--smoke]``.
"""

from __future__ import annotations

import torch

from common.bench import stamp_dict
from common.cli import add_common_args, friendly_errors, make_parser
from common.datasets import eval_token_ids
from common.loader import load_tokenizer
from common.report import emit_json, print_table

GRANULARITIES = ("tensor", "head", "token_head", "channel")


def capture_kv(model, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Post-RoPE K and V of every layer after a prefill: each ``[L, Hkv, T, D]``."""
    from ch04_kvcache.kv_cache import ContiguousKVCache

    cache = ContiguousKVCache(model.config, 1, len(ids), dtype=torch.float32)
    with torch.no_grad():
        model(torch.tensor([ids]), cache=cache)
    return cache.k[:, 0].clone(), cache.v[:, 0].clone()


def _reduce_dims(granularity: str) -> tuple[int, ...]:
    """Dims of ``[L, H, T, D]`` that share one scale."""
    return {"tensor": (1, 2, 3), "head": (2, 3), "token_head": (3,), "channel": (2,)}[granularity]


def fake_quant_kv(x: torch.Tensor, bits: int, granularity: str) -> torch.Tensor:
    """Symmetric quantize-dequantize of ``x[L, H, T, D]`` with one fp16 scale per group of ``granularity``."""
    qmax = (1 << (bits - 1)) - 1
    scale = (x.abs().amax(dim=_reduce_dims(granularity), keepdim=True) / qmax).clamp(min=1e-8)
    scale = scale.half().float()
    return torch.clamp(torch.round(x / scale), -qmax, qmax) * scale


def rel_err(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x - y).norm() / x.norm())


def outlier_ratio(x: torch.Tensor) -> float:
    """Median over layers/heads of (max channel absmax / median channel absmax)."""
    per_channel = x.abs().amax(dim=2)  # [L, H, D]
    ratio = per_channel.amax(-1) / per_channel.median(-1).values  # [L, H]
    return float(ratio.median())


def scale_bytes_per_token(granularity: str, cfg, T: int) -> float:
    """fp16 scale bytes per token (K or V, all layers); per-channel/tensor/head amortise over ``T``."""
    L, H, D = cfg.num_layers, cfg.num_kv_heads, cfg.head_dim
    n = {"tensor": L / T, "head": L * H / T, "token_head": L * H, "channel": L * H * D / T}[granularity]
    return 2 * n


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch06_quantization.kv_quant", __doc__)
    add_common_args(parser)
    parser.add_argument("--tokens", type=int, default=512)
    args = parser.parse_args(argv)
    with friendly_errors():
        from ch06_quantization.evaluate import load_model

        model = load_model(args.model)
        T = 64 if args.smoke else args.tokens
        ids = eval_token_ids(load_tokenizer(args.model), T)
        K, V = capture_kv(model, ids)
        cfg = model.config
        fp16_bytes = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim
        rows = []
        for bits in (8, 4):
            for g in GRANULARITIES:
                rows.append({"bits": bits, "granularity": g, "k_rel_err": rel_err(K, fake_quant_kv(K, bits, g)),
                             "v_rel_err": rel_err(V, fake_quant_kv(V, bits, g)),
                             "bytes_vs_fp16": (fp16_bytes * bits / 16 + scale_bytes_per_token(g, cfg, T))
                             / fp16_bytes})
        out = {"k_outlier_ratio": outlier_ratio(K), "v_outlier_ratio": outlier_ratio(V), "tokens": T}
        if not args.json:
            print(f"channel absmax / median channel (median over layers and heads): K {out['k_outlier_ratio']:.1f}x,"
                  f" V {out['v_outlier_ratio']:.1f}x  ({T} held-out tokens)")
            print_table(rows, title="KV round-trip error by granularity (symmetric, fp16 scales)", floatfmt=".4f")
        emit_json({"benchmark": "ch06.kv_quant", **out, "rows": rows, "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
