"""The naive contiguous KV cache (book 4.3.1, 4.3.4): one slab per sequence, preallocated to max length.

Each layer's K and V live in ``(layers, B, kv_heads, max_len, head_dim)`` tensors. A forward step writes
the new tokens' K/V at their positions and attends over everything cached so far, so decoding a token
costs one token's projections instead of re-running the whole prefix (see ``no_cache_vs_cache.py``).
The price is memory reserved up front for ``max_len`` tokens whether the answer is 5 tokens or 5,000:
``paged_cache.py`` and ``memory_waste.py`` measure what that costs.

Both this class and ``Int8KVCache`` (``int8_kv.py``) implement the same two calls the model makes:
``update(layer, k, v, step) -> (k_all, v_all)`` and, after the last layer, ``advance(step)``.

    python -m ch04_kvcache.kv_cache --max-len 4096   # bytes the naive cache reserves for the model
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ch04_kvcache.config import ModelConfig


class CacheFullError(RuntimeError):
    """A step would write past ``max_len``; the message says how long the cache is."""


@dataclass(slots=True)
class Step:
    """What one forward call writes and attends to; computed once per call, shared by every layer.

    ``positions`` (B, T) are the new tokens' positions. ``start`` is set when every row writes the same
    contiguous range ``[start, start + T)`` (the common case, written with a slice instead of a scatter).
    ``kv_len`` is the cache length after the step: attention reads ``[0, kv_len)``.
    """

    positions: torch.Tensor  # (B, T) long
    start: int | None
    kv_len: int
    attn_mask: torch.Tensor | None  # (B, 1, T, kv_len) bool, True = may attend; None with is_causal/decode
    is_causal: bool


class ContiguousKVCache:
    """Preallocated K/V for ``batch_size`` sequences of up to ``max_len`` tokens."""

    def __init__(self, config: ModelConfig, batch_size: int, max_len: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        if batch_size < 1 or max_len < 1:
            raise ValueError("batch_size and max_len must be at least 1")
        self.config = config
        self.batch_size = batch_size
        self.max_len = max_len
        self.device = torch.device(device)
        self.dtype = dtype
        shape = (config.num_layers, batch_size, config.num_kv_heads, max_len, config.head_dim)
        self.k = torch.zeros(shape, device=self.device, dtype=dtype)  # (L, B, Hkv, max_len, D)
        self.v = torch.zeros(shape, device=self.device, dtype=dtype)
        self.length = 0

    # ------------------------------------------------------------------ what the model calls
    def check_room(self, new_len: int) -> None:
        if new_len > self.max_len:
            raise CacheFullError(f"the KV cache holds {self.max_len} tokens per sequence and this step needs "
                                 f"{new_len}; create it with a larger max_len")

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, step: Step
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``k, v`` (B, Hkv, T, D) at ``step.positions``; return K/V (B, Hkv, kv_len, D) to attend over."""
        self._write(self.k[layer], self.v[layer], k, v, step)
        return self.k[layer, :, :, : step.kv_len], self.v[layer, :, :, : step.kv_len]

    def advance(self, step: Step) -> None:
        """Called once after all layers: the cache now holds ``step.kv_len`` tokens."""
        self.length = step.kv_len

    @staticmethod
    def _write(k_store: torch.Tensor, v_store: torch.Tensor, k: torch.Tensor, v: torch.Tensor, step: Step) -> None:
        if step.start is not None:
            t = k.shape[2]
            k_store[:, :, step.start: step.start + t] = k
            v_store[:, :, step.start: step.start + t] = v
        else:  # per-row positions: scatter (B, T) -> store[b, :, pos[b, t]]
            b_idx = torch.arange(k.shape[0], device=k.device)[:, None].expand_as(step.positions)
            k_store[b_idx, :, step.positions] = k.transpose(1, 2)  # (B, T, Hkv, D)
            v_store[b_idx, :, step.positions] = v.transpose(1, 2)

    # ------------------------------------------------------------------ bookkeeping
    def truncate(self, n: int) -> None:
        """Forget every token at position >= n (speculative decoding rolls back rejected drafts)."""
        if not 0 <= n <= self.length:
            raise ValueError(f"can truncate to 0..{self.length} tokens, not {n}")
        self.length = n

    def reset(self) -> None:
        self.length = 0

    @property
    def nbytes(self) -> int:
        """Bytes reserved (all of it, used or not: that is the point of 4.3.1)."""
        return self.k.nbytes + self.v.nbytes

    @property
    def used_bytes(self) -> int:
        """Bytes that hold real tokens' K/V."""
        return self.nbytes * self.length // self.max_len


def main(argv: list[str] | None = None) -> int:
    from common.cli import friendly_errors, make_parser, positive_int
    from common.loader import EMBEDDED, load_config

    parser = make_parser("python -m ch04_kvcache.kv_cache", __doc__)
    parser.add_argument("--model", default=EMBEDDED, help="preset, local HF folder or hub id")
    parser.add_argument("--max-len", type=positive_int, default=4096, help="tokens reserved per sequence")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="sequences")
    args = parser.parse_args(argv)
    with friendly_errors():
        cfg = ModelConfig.from_dict(load_config(args.model))
        per_seq = cfg.kv_bytes_per_token(4) * args.max_len
        print(f"contiguous fp32 KV cache for {args.batch_size} x {args.max_len} tokens: "
              f"{per_seq * args.batch_size / 2**20:,.1f} MiB (arithmetic: 2 x {cfg.num_layers} layers x "
              f"{cfg.num_kv_heads} kv heads x {cfg.head_dim} dims x 4 bytes per token)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
