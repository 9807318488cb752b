"""Every cache gives the same answer as no cache: identical greedy tokens, equal logits, paged == alone."""

from __future__ import annotations

import pytest
import torch

from ch04_kvcache.block_manager import BlockManager
from ch04_kvcache.generate import CACHE_KINDS, generate
from ch04_kvcache.kv_cache import CacheFullError, ContiguousKVCache
from ch04_kvcache.paged_attention import (
    AttentionMetadata,
    build_plan,
    paged_attention,
    paged_attention_reference,
)
from ch04_kvcache.paged_cache import PagedKVCache

TOL = {"atol": 1e-4, "rtol": 1e-4}


def _ids(vocab: int, t: int, seed: int) -> list[int]:
    return torch.randint(3, vocab, (t,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.parametrize("cache", ["contiguous", "paged"])
def test_greedy_tokens_identical_to_no_cache_on_tiny_model(tiny_model, cache):
    model, _ = tiny_model
    prompt = _ids(256, 11, 0)
    ref = generate(model, prompt, 40, cache="none", eos_token_id=None)
    got = generate(model, prompt, 40, cache=cache, eos_token_id=None, block_size=4)
    assert got.token_ids == ref.token_ids and len(got.token_ids) == 40


def test_greedy_tokens_identical_for_every_cache_on_embedded_model(embedded_model, embedded_tokenizer):
    from common.chat import FRANCE_ANSWER, FRANCE_PROMPT, chat_ids

    prompt = chat_ids(embedded_tokenizer, FRANCE_PROMPT)
    results = {c: generate(embedded_model, prompt, 12, cache=c).token_ids
               for c in CACHE_KINDS if c != "int8"}
    assert len({tuple(v) for v in results.values()}) == 1, results
    assert embedded_tokenizer.decode(results["none"], skip_special_tokens=True).strip() == FRANCE_ANSWER


def test_contiguous_cache_chunked_prefill_equals_one_pass(tiny_model):
    model, _ = tiny_model
    ids = torch.tensor([_ids(256, 20, 1)])
    with torch.no_grad():
        full = model(ids)
        cache = ContiguousKVCache(model.config, 1, 32)
        parts = [model(ids[:, a:b], cache=cache) for a, b in ((0, 7), (7, 8), (8, 20))]
        positions = torch.arange(8, 20)[None]
        cache.truncate(8)  # roll back and redo the last chunk with explicit positions
        again = model(ids[:, 8:20], positions=positions, cache=cache)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, **TOL)
    torch.testing.assert_close(again, full[:, 8:], **TOL)
    assert cache.length == 20


def test_contiguous_cache_batch_of_two_matches_single_runs(tiny_model):
    model, _ = tiny_model
    ids = torch.tensor([_ids(256, 9, 2), _ids(256, 9, 3)])
    with torch.no_grad():
        cache = ContiguousKVCache(model.config, 2, 16)
        model(ids[:, :8], cache=cache)
        batched = model(ids[:, 8:], cache=cache)[:, -1]
        alone = torch.stack([model(ids[i:i + 1])[0, -1] for i in range(2)])
    torch.testing.assert_close(batched, alone, **TOL)


def test_contiguous_cache_reports_full_and_bytes(tiny_model):
    model, _ = tiny_model
    cache = ContiguousKVCache(model.config, 1, 4)
    cfg = model.config
    assert cache.nbytes == 2 * cfg.num_layers * 4 * cfg.num_kv_heads * cfg.head_dim * 4
    with pytest.raises(CacheFullError, match="holds 4 tokens"), torch.no_grad():
        model(torch.tensor([_ids(256, 5, 4)]), cache=cache)


def test_forward_batch_mixed_prefill_and_decode_equals_each_sequence_alone(tiny_model):
    model, _ = tiny_model
    bs = 4
    seqs = [_ids(256, n, 10 + i) for i, n in enumerate((9, 6, 13))]
    bm = BlockManager(16, bs)
    cache = PagedKVCache(model.config, 16, bs)
    with torch.no_grad():
        # Step 1: prefill seqs 1 and 2 fully (minus their last token), and only the first 5 tokens of seq 0.
        pre = [5, len(seqs[1]) - 1, len(seqs[2]) - 1]
        tables = [bm.allocate(i, s[:n]) for i, (s, n) in enumerate(zip(seqs, pre, strict=True))]
        slots = sum((bm.slot_mapping(i, 0, n) for i, n in enumerate(pre)), [])
        meta = AttentionMetadata(pre, pre, tables, torch.tensor(slots))
        ids = torch.tensor(sum((s[:n] for s, n in zip(seqs, pre, strict=True)), []))
        pos = torch.tensor(sum((list(range(n)) for n in pre), []))
        model.forward_batch(ids, pos, cache, meta)
        # Step 2, mixed: seq 0 gets a prefill chunk of its remaining 4 tokens, seqs 1, 2 decode one token.
        for t in seqs[0][5:9]:
            assert bm.append_token(0, t) is None
        bm.append_token(1, seqs[1][-1])
        bm.append_token(2, seqs[2][-1])
        q = [4, 1, 1]
        ctx = [9, len(seqs[1]), len(seqs[2])]
        tables = [bm.block_table(i) for i in range(3)]
        assert tables[0] != list(range(len(tables[0])))  # interleaved growth: a real indirection
        slots = bm.slot_mapping(0, 5, 9) + bm.slot_mapping(1, ctx[1] - 1, ctx[1]) + \
            bm.slot_mapping(2, ctx[2] - 1, ctx[2])
        meta = AttentionMetadata(q, ctx, tables, torch.tensor(slots),
                                 logits_indices=torch.arange(6))  # every row, to check all of them
        new_ids = seqs[0][5:9] + [seqs[1][-1], seqs[2][-1]]
        pos = torch.tensor([5, 6, 7, 8, ctx[1] - 1, ctx[2] - 1])
        logits = model.forward_batch(torch.tensor(new_ids), pos, cache, meta)
        alone = [model(torch.tensor([s]))[0] for s in seqs]
    torch.testing.assert_close(logits[:4], alone[0][5:9], **TOL)
    torch.testing.assert_close(logits[4], alone[1][-1], **TOL)
    torch.testing.assert_close(logits[5], alone[2][-1], **TOL)
    bm.check_invariants()


def test_forward_batch_default_logits_are_last_token_of_each_sequence(tiny_model):
    model, _ = tiny_model
    bs = 4
    seqs = [_ids(256, 7, 20), _ids(256, 3, 21)]
    bm = BlockManager(8, bs)
    tables = [bm.allocate(i, s) for i, s in enumerate(seqs)]
    cache = PagedKVCache(model.config, 8, bs)
    meta = AttentionMetadata([7, 3], [7, 3], tables, torch.tensor(bm.slot_mapping(0, 0, 7) + bm.slot_mapping(1, 0, 3)))
    with torch.no_grad():
        logits = model.forward_batch(torch.tensor(seqs[0] + seqs[1]), torch.tensor(list(range(7)) + [0, 1, 2]),
                                     cache, meta)
        alone = torch.stack([model(torch.tensor([s]))[0, -1] for s in seqs])
    assert logits.shape == (2, 256)
    torch.testing.assert_close(logits, alone, **TOL)


def _shuffled_tables(lengths: list[int], block_size: int, num_blocks: int, seed: int) -> list[list[int]]:
    """Disjoint block tables drawn in a random order (any allocator's output is such a set)."""
    free = torch.randperm(num_blocks, generator=torch.Generator().manual_seed(seed)).tolist()
    return [[free.pop() for _ in range(-(-n // block_size))] for n in lengths]


def _slots(table: list[int], start: int, end: int, bs: int) -> list[int]:
    return [table[p // bs] * bs + p % bs for p in range(start, end)]


@pytest.mark.parametrize("case", ["decode_unequal", "decode_equal", "mixed"])
def test_paged_attention_matches_naive_reference(case):
    torch.manual_seed(0)
    bs, hkv, h, d = 4, 2, 6, 8
    kb, vb = torch.randn(32, bs, hkv, d), torch.randn(32, bs, hkv, d)
    q_lens, ctx = {"decode_unequal": ([1, 1, 1], [5, 12, 1]), "decode_equal": ([1, 1], [7, 7]),
                   "mixed": ([3, 1, 6], [10, 4, 6])}[case]
    tables = _shuffled_tables(ctx, bs, 32, seed=3)
    slots = sum((_slots(t, c - q, c, bs) for t, q, c in zip(tables, q_lens, ctx, strict=True)), [])
    meta = AttentionMetadata(q_lens, ctx, tables, torch.tensor(slots))
    q = torch.randn(meta.num_tokens, h, d)
    fast = paged_attention(q, kb.view(-1, hkv, d), vb.view(-1, hkv, d), build_plan(meta, bs, q.device))
    torch.testing.assert_close(fast, paged_attention_reference(q, kb, vb, meta), atol=1e-5, rtol=1e-5)


def test_paged_cache_copy_block_and_sizes(tiny_model):
    model, _ = tiny_model
    cfg = model.config
    cache = PagedKVCache(cfg, 4, 8)
    cache.kv[:, :, 1].normal_()
    cache.copy_block(1, 3)
    assert torch.equal(cache.k[0][3], cache.k[0][1]) and torch.equal(cache.v[-1][3], cache.v[-1][1])
    assert cache.bytes_per_block == 2 * cfg.num_layers * 8 * cfg.num_kv_heads * cfg.head_dim * 4
    assert cache.nbytes == 4 * cache.bytes_per_block
    with pytest.raises(IndexError):
        cache.copy_block(0, 4)


def test_paged_cache_copy_blocks_does_many_copies_at_once(tiny_model):
    cache = PagedKVCache(tiny_model[0].config, 6, 4)
    cache.kv.normal_()
    before = cache.kv.clone()
    cache.copy_blocks([(1, 4), (1, 5), (2, 0)])
    for src, dst in [(1, 4), (1, 5), (2, 0)]:
        assert torch.equal(cache.kv[:, :, dst], before[:, :, src])
    assert torch.equal(cache.kv[:, :, 1:4], before[:, :, 1:4])      # sources untouched
    cache.copy_blocks([])
    with pytest.raises(ValueError, match="distinct"):
        cache.copy_blocks([(1, 2), (2, 3)])
    with pytest.raises(IndexError):
        cache.copy_blocks([(1, 2), (0, 6)])


def test_metadata_rejects_inconsistent_lengths():
    with pytest.raises(ValueError, match="slot_mapping"):
        AttentionMetadata([2], [2], [[0]], torch.tensor([0]))
    with pytest.raises(ValueError, match="query_len <= context_len"):
        AttentionMetadata([3], [2], [[0]], torch.tensor([0, 1, 2]))
