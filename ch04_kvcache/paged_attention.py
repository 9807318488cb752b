"""PagedAttention in torch (book 4.3.2, 4.3.3): attend over K/V gathered through block tables.

A flattened, variable-length batch of N new tokens arrives with an :class:`AttentionMetadata`: how many
new tokens each sequence brings (a whole prompt, a prefill chunk, or one decode token), how long each
context is after this step, each sequence's block table, and the physical slot of every new token.
The model writes the new K/V at ``slot_mapping``; each sequence then attends causally over its
``context_lens[i]`` tokens read through its block table.

:func:`build_plan` turns the metadata into index tensors once per forward (not once per layer), so each
layer does one ``index_select`` for K and one for V. A pure-decode batch (every sequence brings one token,
what a continuous-batching engine runs most of the time) is padded and runs as a single SDPA call;
mixed batches loop over sequences. :func:`paged_attention_reference` is the naive version (Python loops
over tokens and blocks, explicit softmax) the tests hold the fast one against. A kernel that never
materialises the gathered K/V plugs in as ``decode_kernel``: ``paged_decode_cpu.py`` (C++, CPU) here,
Triton for GPUs in chapter 9.

    python -m ch04_kvcache.paged_attention --help   # a small self-check on random tensors
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AttentionMetadata:
    """What the scheduler tells the model about one flattened batch (sequence i owns rows of N)."""

    query_lens: list[int]  # new tokens per sequence; sum = N
    context_lens: list[int]  # tokens with K/V after this step, new ones included
    block_tables: list[list[int]]  # physical block ids per sequence
    slot_mapping: torch.Tensor  # (N,) long: block * block_size + offset of each new token
    logits_indices: torch.Tensor | None = None  # rows of N to project to the vocabulary

    def __post_init__(self) -> None:
        n = len(self.query_lens)
        if len(self.context_lens) != n or len(self.block_tables) != n:
            raise ValueError("query_lens, context_lens and block_tables need one entry per sequence")
        for q, c in zip(self.query_lens, self.context_lens, strict=True):
            if q < 1 or c < q:
                raise ValueError(f"each sequence needs 1 <= query_len <= context_len, got {q} and {c}")
        if self.slot_mapping.numel() != sum(self.query_lens):
            raise ValueError(f"slot_mapping has {self.slot_mapping.numel()} entries for "
                             f"{sum(self.query_lens)} new tokens")

    @property
    def num_tokens(self) -> int:
        return sum(self.query_lens)

    def default_logits_indices(self) -> torch.Tensor:
        """The last new token of each sequence."""
        ends = torch.tensor(self.query_lens, dtype=torch.long).cumsum(0) - 1
        return ends.to(self.slot_mapping.device)


# A decode kernel reads K/V where they lie in the block pool: (q (S, H, D), k_flat, v_flat, plan) -> (S, H, D).
# paged_decode_cpu.py provides one for CPU (ch05's engine sets ``model.decode_kernel``); ch09 adds Triton.
DecodeKernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "PagedPlan"], torch.Tensor]


@dataclass
class PagedPlan:
    """Index tensors derived from :class:`AttentionMetadata`, shared by every layer of one forward."""

    query_lens: list[int]
    context_lens: list[int]
    decode_only: bool
    gather_slots: torch.Tensor  # decode: (S * max_ctx,) padded; mixed: (sum ctx,) concatenated
    max_ctx: int
    decode_mask: torch.Tensor | None  # (S, 1, 1, max_ctx) bool, None when all contexts are equally long
    masks: list[torch.Tensor | None]  # mixed: per-sequence (q, ctx) bool mask, None = plain causal/none
    block_tables: torch.Tensor | None = None  # (S, max_blocks) long, padded with block 0
    context_lens_t: torch.Tensor | None = None  # (S,) long
    block_size: int = 0
    decode_kernel: DecodeKernel | None = None  # replaces gather + SDPA for pure-decode batches


def build_plan(meta: AttentionMetadata, block_size: int, device: torch.device,
               decode_kernel: DecodeKernel | None = None) -> PagedPlan:
    """Turn block tables into slot indices: slot(p) = table[p // block_size] * block_size + p % block_size."""
    ctx = meta.context_lens
    max_ctx = max(ctx)
    max_blocks = -(-max_ctx // block_size)
    for table, c in zip(meta.block_tables, ctx, strict=True):
        if len(table) * block_size < c:
            raise ValueError(f"a block table of {len(table)} blocks cannot hold {c} tokens")
    tables = torch.tensor([t[:max_blocks] + [0] * (max_blocks - len(t[:max_blocks])) for t in meta.block_tables],
                          dtype=torch.long)  # (S, max_blocks), padded with block 0 (masked out below)
    ctx_t = torch.tensor(ctx)
    decode_only = all(q == 1 for q in meta.query_lens)
    masks: list[torch.Tensor | None] = []
    decode_mask = None
    if decode_only and decode_kernel is not None:  # the kernel walks the block tables itself: no slot indices
        return PagedPlan(list(meta.query_lens), list(ctx), True, torch.empty(0, dtype=torch.long), max_ctx, None,
                         masks, tables.to(device), ctx_t.to(device), block_size, decode_kernel)
    pos = torch.arange(max_ctx)
    slots = tables[:, pos // block_size] * block_size + pos % block_size  # (S, max_ctx)
    valid = pos[None, :] < ctx_t[:, None]  # (S, max_ctx)
    if decode_only:
        gather = slots.reshape(-1)
        if min(ctx) != max_ctx:
            decode_mask = valid[:, None, None, :].to(device)
    else:
        gather = slots[valid]
        for q, c in zip(meta.query_lens, ctx, strict=True):
            if q == 1 or q == c:
                masks.append(None)  # decode row sees everything; full prompt is plain causal
            else:  # a chunk continuing a context: query i sits at position c - q + i
                qpos = torch.arange(c - q, c)[:, None]
                masks.append((torch.arange(c)[None, :] <= qpos).to(device))
    return PagedPlan(list(meta.query_lens), list(ctx), decode_only, gather.to(device), max_ctx, decode_mask, masks)


def paged_attention(q: torch.Tensor, k_flat: torch.Tensor, v_flat: torch.Tensor, plan: PagedPlan,
                    scale: float | None = None) -> torch.Tensor:
    """q (N, H, D); k_flat/v_flat (num_slots, Hkv, D) with new tokens already written -> out (N, H, D)."""
    if plan.decode_kernel is not None and plan.decode_only:
        return plan.decode_kernel(q, k_flat, v_flat, plan)
    n, h, d = q.shape
    k_all = k_flat.index_select(0, plan.gather_slots)  # decode: (S*max_ctx, Hkv, D); mixed: (sum ctx, Hkv, D)
    v_all = v_flat.index_select(0, plan.gather_slots)
    if plan.decode_only:
        s = n
        hkv = k_flat.shape[1]
        k = k_all.view(s, plan.max_ctx, hkv, d).transpose(1, 2)  # (S, Hkv, max_ctx, D)
        v = v_all.view(s, plan.max_ctx, hkv, d).transpose(1, 2)
        out = F.scaled_dot_product_attention(q[:, :, None, :], k, v, attn_mask=plan.decode_mask, scale=scale,
                                             enable_gqa=h != hkv)  # (S, H, 1, D)
        return out.view(n, h, d)
    outs = []
    q0 = c0 = 0
    for ql, cl, mask in zip(plan.query_lens, plan.context_lens, plan.masks, strict=True):
        qi = q[q0:q0 + ql].transpose(0, 1)[None]  # (1, H, ql, D)
        ki = k_all[c0:c0 + cl].transpose(0, 1)[None]  # (1, Hkv, cl, D)
        vi = v_all[c0:c0 + cl].transpose(0, 1)[None]
        causal = mask is None and ql == cl and ql > 1
        oi = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=mask, is_causal=causal, scale=scale,
                                            enable_gqa=h != ki.shape[1])
        outs.append(oi[0].transpose(0, 1))  # (ql, H, D)
        q0 += ql
        c0 += cl
    return torch.cat(outs, dim=0)


def paged_attention_reference(q: torch.Tensor, k_blocks: torch.Tensor, v_blocks: torch.Tensor,
                              meta: AttentionMetadata) -> torch.Tensor:
    """Naive paged attention: walk each block table token by token; explicit softmax. Same contract.

    ``k_blocks``/``v_blocks`` are one layer's pools, (num_blocks, block_size, Hkv, D).
    """
    n, h, d = q.shape
    block_size, hkv = k_blocks.shape[1], k_blocks.shape[2]
    group = h // hkv
    out = torch.empty_like(q)
    row = 0
    for ql, cl, table in zip(meta.query_lens, meta.context_lens, meta.block_tables, strict=True):
        keys = torch.stack([k_blocks[table[p // block_size], p % block_size] for p in range(cl)])  # (cl, Hkv, D)
        vals = torch.stack([v_blocks[table[p // block_size], p % block_size] for p in range(cl)])
        keys = keys.repeat_interleave(group, dim=1)  # (cl, H, D): query head j uses kv head j // group
        vals = vals.repeat_interleave(group, dim=1)
        for i in range(ql):
            visible = cl - ql + i + 1  # causal: this token and everything before it
            scores = torch.einsum("hd,khd->hk", q[row + i], keys[:visible]) / math.sqrt(d)  # (H, visible)
            out[row + i] = torch.einsum("hk,khd->hd", scores.softmax(-1), vals[:visible])
        row += ql
    return out


def main(argv: list[str] | None = None) -> int:
    from common.cli import make_parser

    parser = make_parser("python -m ch04_kvcache.paged_attention", __doc__)
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    block_size, hkv, h, d = 4, 2, 4, 8
    k_blocks = torch.randn(16, block_size, hkv, d)
    v_blocks = torch.randn(16, block_size, hkv, d)
    # Two sequences: a 5-token prompt (blocks 7, 2) and one decode token of a 9-token context (3, 11, 5).
    meta = AttentionMetadata([5, 1], [5, 9], [[7, 2], [3, 11, 5]],
                             torch.tensor([28, 29, 30, 31, 8, 20]))
    q = torch.randn(meta.num_tokens, h, d)
    plan = build_plan(meta, block_size, q.device)
    fast = paged_attention(q, k_blocks.view(-1, hkv, d), v_blocks.view(-1, hkv, d), plan)
    ref = paged_attention_reference(q, k_blocks, v_blocks, meta)
    diff = (fast - ref).abs().max().item()
    print(f"paged attention vs naive reference on a mixed prefill+decode batch: max abs diff {diff:.2e}")
    return 0 if diff < 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
