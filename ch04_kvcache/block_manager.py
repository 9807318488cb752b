"""The block manager behind PagedAttention, in pure Python (book 4.3.2, 4.3.3, 4.4.3).

The KV cache is cut into ``num_blocks`` fixed-size blocks of ``block_size`` token slots. Each sequence
owns a *block table* (logical block i -> physical block id); physical blocks carry a reference count so
several sequences can share one:

* **fork** (parallel sampling, beam search): the child gets a copy of the parent's table, every block's
  reference count goes up by one; nothing is copied.
* **copy-on-write**: appending a token to a sequence whose last (partial) block is shared takes a fresh
  block and returns ``CopyOnWrite(src, dst)``; the caller copies the K/V of ``src`` into ``dst``
  (``PagedKVCache.copy_block``, or ``copy_blocks`` for a whole step) before writing the new token. With
  n forked sequences the first n - 1 writers copy; the last holder writes in place. Full shared blocks
  are never written.
* **prefix caching** (``enable_prefix_caching=True``): a full block is identified by a chained hash,
  ``hash((parent_block_hash, tokens_of_this_block))``, so equal hashes mean equal whole prefixes. A new
  prompt walks its full blocks and shares every block already present (reference +1) until the first
  miss. Only blocks lying entirely inside the first ``len(prompt) - 1`` tokens can hit, as in vLLM: the
  last prompt token is always recomputed (its logits are needed) and no shared block is ever written.
* **cached free blocks, LRU eviction**: a freed block whose hash is registered keeps its K/V and stays
  findable by hash while it sits on the free list; a later prompt with the same prefix revives it.
  Allocation takes blocks from the head of the free list (least recently freed first, blocks with no
  hash before any cached one), and only then forgets the taken block's hash. A sequence's blocks are
  freed tail first, so a prefix's first blocks are the last to be evicted.

Every operation either succeeds or raises (``OutOfBlocks``, ``KeyError``, ``ValueError``) with the
state unchanged; ``check_invariants`` verifies the bookkeeping (tests/ch04/test_block_manager.py drives
it with hypothesis). Run ``python -m ch04_kvcache.block_manager`` for a small walk-through.
"""

from __future__ import annotations

import argparse
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass


class OutOfBlocks(RuntimeError):
    """Not enough free blocks; raised before anything was changed."""


@dataclass(frozen=True)
class CopyOnWrite:
    """Copy physical block ``src`` into ``dst`` before writing (the sequence now owns ``dst``)."""

    src: int
    dst: int


def block_hash(parent: int | None, tokens: Sequence[int]) -> int:
    """Chained hash of one full block: equal values mean equal token prefixes (up to 64-bit collisions,
    which we guard against by also comparing the block's own tokens). Python's hash of ints and tuples
    does not depend on PYTHONHASHSEED, so it is stable across runs."""
    return hash((parent, tuple(tokens)))


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = False) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError(f"num_blocks and block_size must be positive, got {num_blocks} and {block_size}")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self._ref = [0] * num_blocks
        self._hash: list[int | None] = [None] * num_blocks          # registered hash of each block
        self._block_tokens: list[tuple[int, ...] | None] = [None] * num_blocks
        self._free: OrderedDict[int, None] = OrderedDict((b, None) for b in range(num_blocks))
        self._cached: dict[int, int] = {}                            # hash -> block id
        self._tables: dict[int, list[int]] = {}
        self._tokens: dict[int, list[int]] = {}
        self._hashes: dict[int, list[int]] = {}                      # chain hashes of each seq's full blocks
        self._num_cached: dict[int, int] = {}
        self.prefix_queries = 0                                      # full prompt blocks looked up
        self.prefix_hits = 0                                         # ... and found in the cache

    # ------------------------------------------------------------------ queries
    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    @property
    def num_used_blocks(self) -> int:
        return self.num_blocks - len(self._free)

    @property
    def usage(self) -> float:
        """Fraction of blocks held by live sequences (what vLLM exports as ``kv_cache_usage_perc``)."""
        return self.num_used_blocks / self.num_blocks

    @property
    def num_cached_free_blocks(self) -> int:
        """Free blocks that still hold a findable prefix (evicted only when reused)."""
        return sum(1 for b in self._free if self._hash[b] is not None)

    def __contains__(self, seq_id: object) -> bool:
        return seq_id in self._tables

    def block_table(self, seq_id: int) -> list[int]:
        return list(self._table(seq_id))

    def num_tokens(self, seq_id: int) -> int:
        return len(self._seq_tokens(seq_id))

    def num_cached_tokens(self, seq_id: int) -> int:
        self._table(seq_id)
        return self._num_cached[seq_id]

    def ref_count(self, block: int) -> int:
        return self._ref[block]

    def slot_mapping(self, seq_id: int, start: int, end: int) -> list[int]:
        """Physical slot (block * block_size + offset) of each position in ``[start, end)``."""
        table, n = self._table(seq_id), self.num_tokens(seq_id)
        if not 0 <= start <= end <= n:
            raise ValueError(f"positions [{start}, {end}) are outside sequence {seq_id}'s {n} tokens")
        bs = self.block_size
        return [table[p // bs] * bs + p % bs for p in range(start, end)]

    def _blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def can_allocate(self, num_tokens: int) -> bool:
        """Enough free blocks for a prompt of ``num_tokens`` (ignoring possible prefix hits)."""
        return self._blocks_for(num_tokens) <= len(self._free)

    def can_append(self, seq_id: int) -> bool:
        return self._new_block_needed(seq_id) <= len(self._free)

    # ------------------------------------------------------------------ internals
    def _table(self, seq_id: int) -> list[int]:
        try:
            return self._tables[seq_id]
        except KeyError:
            raise KeyError(f"sequence {seq_id} has no blocks (never allocated, or already freed)") from None

    def _seq_tokens(self, seq_id: int) -> list[int]:
        self._table(seq_id)
        return self._tokens[seq_id]

    def _new_block_needed(self, seq_id: int) -> int:
        """1 if appending one token takes a block (a full last block, or a shared partial one), else 0."""
        table, n = self._table(seq_id), len(self._tokens[seq_id])
        if n % self.block_size == 0 or self._ref[table[-1]] > 1:
            return 1
        return 0

    def _take_free_block(self) -> int:
        block, _ = self._free.popitem(last=False)
        h = self._hash[block]
        if h is not None:                    # evict: this block's old prefix is no longer findable
            del self._cached[h]
            self._hash[block] = None
            self._block_tokens[block] = None
        self._ref[block] = 1
        return block

    def _register(self, block: int, h: int, tokens: Sequence[int]) -> None:
        if self.enable_prefix_caching and h not in self._cached and self._hash[block] is None:
            self._cached[h] = block
            self._hash[block] = h
            self._block_tokens[block] = tuple(tokens)

    def _lookup(self, h: int, tokens: Sequence[int]) -> int | None:
        block = self._cached.get(h)
        if block is None or self._block_tokens[block] != tuple(tokens):
            return None
        return block

    # ------------------------------------------------------------------ mutations
    def _plan(self, tokens: list[int]) -> tuple[list[int], list[int], int, int]:
        """(chain hashes of the full blocks, prefix-hit blocks, new blocks to take, free blocks usable)."""
        bs, num_full = self.block_size, len(tokens) // self.block_size
        hashes: list[int] = []
        parent: int | None = None
        for i in range(num_full):
            parent = block_hash(parent, tokens[i * bs:(i + 1) * bs])
            hashes.append(parent)
        hits: list[int] = []
        if self.enable_prefix_caching:
            for i in range(max(len(tokens) - 1, 0) // bs):
                block = self._lookup(hashes[i], tokens[i * bs:(i + 1) * bs])
                if block is None:
                    break
                hits.append(block)
        revived = sum(1 for b in hits if self._ref[b] == 0)   # cached free blocks the hits take back
        return hashes, hits, self._blocks_for(len(tokens)) - len(hits), len(self._free) - revived

    def can_allocate_prompt(self, token_ids: Sequence[int]) -> bool:
        """Like ``can_allocate`` but counting prefix hits: exactly when ``allocate`` would succeed."""
        _, _, need, available = self._plan(list(token_ids))
        return need <= available

    def prefix_hit_tokens(self, token_ids: Sequence[int]) -> int:
        """Prompt tokens ``allocate`` would serve from the prefix cache, without allocating (a probe)."""
        return len(self._plan(list(token_ids))[1]) * self.block_size

    def allocate(self, seq_id: int, token_ids: Sequence[int]) -> list[int]:
        """Give a new sequence the blocks for its prompt; returns its block table."""
        if seq_id in self._tables:
            raise ValueError(f"sequence {seq_id} already has blocks; free it first")
        tokens, bs = list(token_ids), self.block_size
        num_full = len(tokens) // bs
        hashes, hits, need, available = self._plan(tokens)
        if need > available:
            raise OutOfBlocks(f"sequence {seq_id} needs {need} new blocks, {available} are free")
        # From here on nothing can fail.
        if self.enable_prefix_caching:
            self.prefix_queries += max(len(tokens) - 1, 0) // bs
            self.prefix_hits += len(hits)
        for b in hits:
            if self._ref[b] == 0:
                del self._free[b]
            self._ref[b] += 1
        table = list(hits)
        for i in range(len(hits), len(hits) + need):
            b = self._take_free_block()
            table.append(b)
            if i < num_full:    # its K/V are written by this step; later prompts may share it
                self._register(b, hashes[i], tokens[i * bs:(i + 1) * bs])
        self._tables[seq_id] = table
        self._tokens[seq_id] = tokens
        self._hashes[seq_id] = hashes
        self._num_cached[seq_id] = len(hits) * bs
        return list(table)

    def append_token(self, seq_id: int, token_id: int) -> CopyOnWrite | None:
        """Make room for one more token (its K/V go to ``slot_mapping(seq_id, n, n + 1)``)."""
        table, tokens = self._table(seq_id), self._tokens[seq_id]
        if self._new_block_needed(seq_id) > len(self._free):
            raise OutOfBlocks(f"sequence {seq_id} needs a new block and none is free")
        cow = None
        if len(tokens) % self.block_size == 0:
            table.append(self._take_free_block())
        elif self._ref[table[-1]] > 1:       # shared partial block: copy it before writing
            src = table[-1]
            dst = self._take_free_block()
            self._ref[src] -= 1
            table[-1] = dst
            cow = CopyOnWrite(src, dst)
        tokens.append(token_id)
        if len(tokens) % self.block_size == 0:
            hashes = self._hashes[seq_id]
            full = tokens[-self.block_size:]
            hashes.append(block_hash(hashes[-1] if hashes else None, full))
            self._register(table[-1], hashes[-1], full)
        return cow

    def fork(self, parent_seq_id: int, child_seq_id: int) -> None:
        """The child shares every block of the parent (reference +1 each); writes trigger copy-on-write."""
        table = self._table(parent_seq_id)
        if child_seq_id in self._tables:
            raise ValueError(f"sequence {child_seq_id} already has blocks; free it first")
        for b in table:
            self._ref[b] += 1
        self._tables[child_seq_id] = list(table)
        self._tokens[child_seq_id] = list(self._tokens[parent_seq_id])
        self._hashes[child_seq_id] = list(self._hashes[parent_seq_id])
        self._num_cached[child_seq_id] = len(self._tokens[parent_seq_id])

    def free(self, seq_id: int) -> None:
        """Release a sequence's blocks; cached ones stay findable until reused (see module doc)."""
        table = self._table(seq_id)
        for b in reversed(table):            # tail first: a prefix's head is evicted last
            assert self._ref[b] > 0, f"block {b} freed twice"
            self._ref[b] -= 1
            if self._ref[b] == 0:
                self._free[b] = None
                if self._hash[b] is None:    # nothing worth keeping: reuse it first
                    self._free.move_to_end(b, last=False)
        for d in (self._tables, self._tokens, self._hashes, self._num_cached):
            del d[seq_id]

    # ------------------------------------------------------------------ checks
    def check_invariants(self) -> None:
        """Raise AssertionError if the bookkeeping is inconsistent."""
        refs = [0] * self.num_blocks
        for seq_id, table in self._tables.items():
            n = len(self._tokens[seq_id])
            assert len(table) == self._blocks_for(n), f"seq {seq_id}: {len(table)} blocks for {n} tokens"
            assert len(set(table)) == len(table), f"seq {seq_id} lists a block twice"
            assert len(self._hashes[seq_id]) == n // self.block_size, f"seq {seq_id}: hash chain length"
            for b in table:
                assert 0 <= b < self.num_blocks, f"block id {b} out of range"
                refs[b] += 1
        assert refs == self._ref, "reference counts differ from the number of tables holding each block"
        free = set(self._free)
        assert free == {b for b in range(self.num_blocks) if refs[b] == 0}, "free list != unreferenced blocks"
        assert len(free) == len(self._free)
        assert self.num_free_blocks + self.num_used_blocks == self.num_blocks
        for h, b in self._cached.items():
            assert self._hash[b] == h and self._block_tokens[b] is not None, f"hash map entry of block {b}"
        assert sum(h is not None for h in self._hash) == len(self._cached), "registered hash not findable"
        if not self.enable_prefix_caching:
            assert not self._cached


def _demo() -> None:
    bm = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=True)
    system = list(range(100, 108))                       # an 8-token shared "system prompt"
    print("A:", bm.allocate(0, system + [1, 2]), "cached tokens", bm.num_cached_tokens(0))
    print("B:", bm.allocate(1, system + [3]), "cached tokens", bm.num_cached_tokens(1))
    bm.fork(1, 2)
    print("fork B->C shares", bm.block_table(2), "; C appends:", bm.append_token(2, 9))
    bm.free(0)
    print(f"after freeing A: {bm.num_free_blocks} free, {bm.num_cached_free_blocks} still cached")
    bm.check_invariants()


def main(argv: list[str] | None = None) -> int:
    # plain argparse: this module stays free of torch (common.cli imports it)
    parser = argparse.ArgumentParser(prog="python -m ch04_kvcache.block_manager", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    _demo()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
