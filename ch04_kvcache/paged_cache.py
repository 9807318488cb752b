"""The paged KV cache (book 4.3.2): a pool of fixed-size blocks shared by every sequence.

Instead of one ``max_len`` slab per sequence, each layer's K and V are a pool of ``num_blocks`` blocks of
``block_size`` token slots, shape ``(num_blocks, block_size, kv_heads, head_dim)``. A sequence owns a
*block table* (list of block ids, handed out by ``block_manager.BlockManager``); token ``p`` of a sequence
lives in slot ``table[p // block_size] * block_size + p % block_size``. Memory is reserved one block at a
time, so at most ``block_size - 1`` slots per sequence are ever empty (vLLM's paper: under 4% waste).
Blocks can be shared between sequences (prefix sharing, parallel sampling) and copied on write.

    python -m ch04_kvcache.paged_cache --num-blocks 1024 --block-size 16
"""

from __future__ import annotations

import torch

from ch04_kvcache.config import ModelConfig


class PagedKVCache:
    """Per-layer K/V block pools; ``k[layer]`` is ``(num_blocks, block_size, kv_heads, head_dim)``."""

    def __init__(self, config: ModelConfig, num_blocks: int, block_size: int = 16,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be at least 1")
        self.config = config
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.device = torch.device(device)
        self.dtype = dtype
        # One allocation: (layers, 2 = K/V, num_blocks, block_size, Hkv, D). copy_block is then one op.
        self.kv = torch.zeros((config.num_layers, 2, num_blocks, block_size, config.num_kv_heads, config.head_dim),
                              device=self.device, dtype=dtype)
        self.k = [self.kv[i, 0] for i in range(config.num_layers)]  # views (num_blocks, bs, Hkv, D)
        self.v = [self.kv[i, 1] for i in range(config.num_layers)]

    @property
    def num_slots(self) -> int:
        return self.num_blocks * self.block_size

    @property
    def bytes_per_block(self) -> int:
        """K and V of ``block_size`` tokens in every layer."""
        cfg = self.config
        return 2 * cfg.num_layers * self.block_size * cfg.num_kv_heads * cfg.head_dim * self.kv.element_size()

    @property
    def nbytes(self) -> int:
        return self.kv.nbytes

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, slot_mapping: torch.Tensor) -> None:
        """Store new tokens' ``k, v`` (N, Hkv, D) at physical slots ``slot_mapping`` (N,)."""
        cfg = self.config
        self.k[layer].view(-1, cfg.num_kv_heads, cfg.head_dim).index_copy_(0, slot_mapping, k)
        self.v[layer].view(-1, cfg.num_kv_heads, cfg.head_dim).index_copy_(0, slot_mapping, v)

    def flat(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K and V of ``layer`` viewed as ``(num_slots, Hkv, D)``: slot ``s`` is row ``s``."""
        cfg = self.config
        return (self.k[layer].view(-1, cfg.num_kv_heads, cfg.head_dim),
                self.v[layer].view(-1, cfg.num_kv_heads, cfg.head_dim))

    def copy_block(self, src: int, dst: int) -> None:
        """Copy-on-write: duplicate block ``src`` into ``dst`` in every layer (K and V)."""
        for b in (src, dst):
            if not 0 <= b < self.num_blocks:
                raise IndexError(f"block {b} is outside 0..{self.num_blocks - 1}")
        self.kv[:, :, dst].copy_(self.kv[:, :, src])

    def copy_blocks(self, pairs: list[tuple[int, int]]) -> None:
        """Many copy-on-write copies in one gather/scatter (vLLM's ``copy_blocks``): ``pairs`` of (src, dst).

        The block manager only ever copies *from* a shared block *into* a fresh one, so no dst is also a
        src and the order of the pairs does not matter."""
        if not pairs:
            return
        if len(pairs) == 1:
            self.copy_block(*pairs[0])
            return
        src, dst = (list(x) for x in zip(*pairs, strict=True))
        for b in src + dst:
            if not 0 <= b < self.num_blocks:
                raise IndexError(f"block {b} is outside 0..{self.num_blocks - 1}")
        if set(src) & set(dst) or len(set(dst)) != len(dst):
            raise ValueError(f"copy_blocks needs distinct destinations that are not sources, got {pairs}")
        idx = torch.tensor(src, device=self.device)
        self.kv[:, :, dst] = self.kv.index_select(2, idx)

    @classmethod
    def for_memory(cls, config: ModelConfig, nbytes: int, block_size: int = 16,
                   device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> PagedKVCache:
        """As many blocks as fit in ``nbytes`` (how vLLM sizes its pool from ``gpu_memory_utilization``)."""
        per_block = 2 * config.num_layers * block_size * config.num_kv_heads * config.head_dim * \
            torch.empty((), dtype=dtype).element_size()
        num_blocks = nbytes // per_block
        if num_blocks < 1:
            raise ValueError(f"{nbytes} bytes hold no block of {per_block} bytes")
        return cls(config, int(num_blocks), block_size, device, dtype)


def main(argv: list[str] | None = None) -> int:
    from common.cli import friendly_errors, make_parser, positive_int
    from common.loader import EMBEDDED, load_config

    parser = make_parser("python -m ch04_kvcache.paged_cache", __doc__)
    parser.add_argument("--model", default=EMBEDDED, help="preset, local HF folder or hub id")
    parser.add_argument("--num-blocks", type=positive_int, default=1024, help="blocks in the pool")
    parser.add_argument("--block-size", type=positive_int, default=16, help="token slots per block")
    args = parser.parse_args(argv)
    with friendly_errors():
        cfg = ModelConfig.from_dict(load_config(args.model))
        per_block = cfg.kv_bytes_per_token(4) * args.block_size
        print(f"{args.num_blocks} blocks x {args.block_size} tokens = {args.num_blocks * args.block_size:,} "
              f"token slots, {per_block / 1024:,.1f} KiB per block (fp32), "
              f"{per_block * args.num_blocks / 2**20:,.1f} MiB in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
