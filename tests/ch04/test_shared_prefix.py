"""Shared KV cache: block counts follow the arithmetic, and K/V shared by prefix hash or by fork with
copy-on-write give the same logits as recomputing everything (tiny random model)."""

from __future__ import annotations

import random

import pytest
import torch

from ch04_kvcache.block_manager import BlockManager
from ch04_kvcache.config import ModelConfig
from ch04_kvcache.shared_prefix import (
    common_prefix_len,
    cross_layer_rows,
    fork_sharing,
    main,
    prefix_sharing,
)
from common.loader import load_config
from common.report import parse_json_line


def _prompts(n: int, common: int, tail: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    prefix = [rng.randrange(1000) for _ in range(common)]
    return [prefix + [1000 + i] + [rng.randrange(1000) for _ in range(tail - 1)] for i in range(n)]


@pytest.mark.parametrize(("common", "block_size"), [(40, 16), (48, 16), (7, 8), (100, 1)])
def test_sharing_saves_the_full_prefix_blocks_of_every_later_request(common, block_size):
    prompts = _prompts(6, common, tail=5)
    r = prefix_sharing(prompts, [9] * 6, block_size)
    assert r.common_prefix_tokens == common
    assert r.blocks_without - r.blocks_with == 5 * (common // block_size)
    assert r.prefill_tokens_cached == 5 * (common // block_size) * block_size
    assert r.prefill_tokens == 6 * (common + 5)


def test_no_common_prefix_no_saving():
    prompts = [[i] * 40 for i in range(4)]
    r = prefix_sharing(prompts, [3] * 4)
    assert r.common_prefix_tokens == 0 and r.blocks_with == r.blocks_without and r.hit_rate == 0
    assert common_prefix_len([[1, 2, 3], [1, 2]]) == 2


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="one output length per prompt"):
        prefix_sharing([[1, 2]], [1, 2])


@pytest.mark.parametrize(("prompt_len", "block_size"), [(40, 16), (32, 16), (5, 4)])
def test_fork_shares_full_prompt_blocks_and_copies_only_the_partial_one(prompt_len, block_size):
    samples, out = 4, 20
    without, with_, copies = fork_sharing(prompt_len, samples, out, block_size)
    full = prompt_len // block_size
    per_seq = -(-(prompt_len + out) // block_size)
    assert without == samples * per_seq
    assert with_ == full + samples * (per_seq - full)
    assert copies == (samples - 1 if prompt_len % block_size else 0)


def test_cross_layer_pairs_halve_kv():
    cfg = ModelConfig.from_dict(load_config("smollm2-135m"))
    rows = cross_layer_rows(cfg, "smollm2-135m", factors=(1, 2, 3))
    by = {(r["kv_heads"], r["layers sharing K/V"]): r for r in rows}
    assert by[(3, 2)]["vs base"] == 0.5 and by[(3, 2)]["K/V sets"] == 15
    assert by[(3, 3)]["KiB/token"] == pytest.approx(7.5)
    assert by[(1, 1)]["vs base"] == pytest.approx(1 / 3)       # MQA: 3 KV heads -> 1
    assert by[(3, 1)]["tokens in 1 GiB"] == 2**30 // (2 * 30 * 3 * 64 * 2)


def _run(model, cache, bm: BlockManager, seq: int, ids: list[int], start: int) -> torch.Tensor:
    """Feed tokens ``ids[start:]`` of ``seq`` through forward_batch; logits of its last token."""
    from ch04_kvcache.paged_attention import AttentionMetadata

    n = len(ids)
    meta = AttentionMetadata([n - start], [n], [bm.block_table(seq)],
                             torch.tensor(bm.slot_mapping(seq, start, n), dtype=torch.long))
    return model.forward_batch(torch.tensor(ids[start:]), torch.arange(start, n), cache, meta)[0]


@torch.inference_mode()
def test_shared_kv_gives_the_same_logits_as_recomputing(tiny_model):
    from ch04_kvcache.paged_cache import PagedKVCache

    model, _ = tiny_model
    bs = 4
    cache = PagedKVCache(model.config, num_blocks=32, block_size=bs)
    bm = BlockManager(32, bs, enable_prefix_caching=True)
    g = torch.Generator().manual_seed(0)
    system = torch.randint(0, 256, (13,), generator=g).tolist()
    a, b = system + [5, 6, 7], system + [9, 10]

    def reference(ids: list[int]) -> torch.Tensor:
        return model(torch.tensor([ids]))[0, -1]

    bm.allocate(0, a)
    torch.testing.assert_close(_run(model, cache, bm, 0, a, 0), reference(a))
    bm.allocate(1, b)
    cached = bm.num_cached_tokens(1)
    assert cached == 12 and bm.block_table(1)[:3] == bm.block_table(0)[:3]
    torch.testing.assert_close(_run(model, cache, bm, 1, b, cached), reference(b))   # only 3 tokens computed

    bm.fork(1, 2)                                      # parallel sample of b: shares its partial block
    c = b + [42]
    cow = bm.append_token(2, 42)
    assert cow is not None
    cache.copy_block(cow.src, cow.dst)
    torch.testing.assert_close(_run(model, cache, bm, 2, c, len(b)), reference(c))
    b2 = b + [77]                                      # the parent continues differently
    assert bm.append_token(1, 77) is None
    torch.testing.assert_close(_run(model, cache, bm, 1, b2, len(b)), reference(b2))
    torch.testing.assert_close(_run(model, cache, bm, 2, c, len(b)), reference(c))   # child untouched
    bm.check_invariants()


def test_cli_smoke_ends_with_json(capsys):
    assert main(["--smoke", "--samples", "3"]) == 0
    out = capsys.readouterr().out
    data = parse_json_line(out)
    assert data["prefix_blocks_with"] < data["prefix_blocks_without"]
    assert data["prefix_memory_saved_pct"] > 30 and data["common_prefix_tokens"] > 200
    assert data["cross_layer_pairs_kv_ratio"] == 0.5 and "hardware" in data
    assert "cross-layer" in out
