"""Block manager: example tests for copy-on-write and prefix hits, and hypothesis state machines that
drive random allocate/append/fork/free sequences against a simulated KV memory."""

from __future__ import annotations

import copy

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ch04_kvcache.block_manager import BlockManager, CopyOnWrite, OutOfBlocks


def snapshot(bm: BlockManager) -> dict:
    return copy.deepcopy(bm.__dict__)


# ---------------------------------------------------------------------------- examples
def test_allocate_gives_ceil_blocks_and_slots_follow_the_table():
    bm = BlockManager(num_blocks=10, block_size=4)
    table = bm.allocate(0, list(range(9)))
    assert len(table) == 3 and bm.num_used_blocks == 3 and bm.num_free_blocks == 7
    slots = bm.slot_mapping(0, 0, 9)
    assert slots == [table[p // 4] * 4 + p % 4 for p in range(9)]
    bm.check_invariants()


def test_append_takes_a_new_block_only_at_a_block_boundary():
    bm = BlockManager(num_blocks=4, block_size=4)
    bm.allocate(0, [1, 2, 3])
    assert bm.append_token(0, 4) is None and bm.num_used_blocks == 1
    assert bm.append_token(0, 5) is None and bm.num_used_blocks == 2
    assert bm.num_tokens(0) == 5
    bm.check_invariants()


def test_fork_shares_blocks_and_copy_on_write_on_shared_last_block():
    bm = BlockManager(num_blocks=8, block_size=4)
    parent_table = bm.allocate(0, [1, 2, 3, 4, 5, 6])     # 1 full + 1 partial block
    bm.fork(0, 1)
    assert bm.block_table(1) == parent_table
    assert [bm.ref_count(b) for b in parent_table] == [2, 2]
    cow = bm.append_token(1, 7)
    assert isinstance(cow, CopyOnWrite) and cow.src == parent_table[1]
    assert bm.block_table(1) == [parent_table[0], cow.dst]
    assert bm.ref_count(parent_table[1]) == 1 and bm.ref_count(cow.dst) == 1
    assert bm.append_token(0, 8) is None                 # parent owns its last block alone again
    bm.check_invariants()


@pytest.mark.parametrize("free_parent_first", [True, False])
def test_n_way_fork_copies_the_shared_last_block_n_minus_1_times_and_leaks_nothing(free_parent_first):
    """Parallel sampling, n = 4: the prompt's full block stays shared by all four; the partial one is
    copied by the first three writers, and the last holder writes it in place (its ref count is 1 by then)."""
    bm = BlockManager(num_blocks=8, block_size=4)
    full, partial = bm.allocate(0, [1, 2, 3, 4, 5, 6])
    for child in (1, 2, 3):
        bm.fork(0, child)
    assert bm.num_used_blocks == 2 and bm.ref_count(full) == bm.ref_count(partial) == 4
    copies = [bm.append_token(seq, 10 + seq) for seq in (1, 2, 3, 0)]
    assert [c.src for c in copies[:3]] == [partial] * 3 and copies[3] is None
    assert [bm.ref_count(c.dst) for c in copies[:3]] == [1, 1, 1]
    assert bm.block_table(0) == [full, partial] and bm.ref_count(partial) == 1
    assert bm.ref_count(full) == 4 and bm.num_used_blocks == 5          # 1 shared + 4 own last blocks
    bm.check_invariants()
    order = [0, 1, 2, 3] if free_parent_first else [3, 2, 1, 0]
    for i, seq in enumerate(order):
        bm.free(seq)
        assert bm.ref_count(full) == 3 - i                           # the shared block goes last
        bm.check_invariants()
    assert bm.num_free_blocks == bm.num_blocks                       # no leak


def test_fork_on_full_last_block_needs_no_copy():
    bm = BlockManager(num_blocks=8, block_size=4)
    bm.allocate(0, [1, 2, 3, 4])
    bm.fork(0, 1)
    assert bm.append_token(1, 5) is None
    assert bm.block_table(1)[0] == bm.block_table(0)[0] and len(bm.block_table(1)) == 2


def test_prefix_hit_shares_full_blocks_of_a_common_prompt():
    bm = BlockManager(num_blocks=16, block_size=4, enable_prefix_caching=True)
    system = list(range(100, 112))                       # 3 full blocks
    a = bm.allocate(0, system + [1, 2])
    b = bm.allocate(1, system + [3])
    assert b[:3] == a[:3] and b[3] != a[3]
    assert bm.num_cached_tokens(0) == 0 and bm.num_cached_tokens(1) == 12
    assert bm.num_used_blocks == 5
    assert (bm.prefix_hits, bm.prefix_queries) == (3, 6)
    bm.check_invariants()


def test_last_prompt_token_is_never_served_from_cache():
    bm = BlockManager(num_blocks=8, block_size=4, enable_prefix_caching=True)
    bm.allocate(0, list(range(8)))
    table = bm.allocate(1, list(range(8)))               # identical prompt: only block 0 may hit
    assert bm.num_cached_tokens(1) == 4 and table[0] == bm.block_table(0)[0]
    assert table[1] != bm.block_table(0)[1]


def test_different_prefix_with_same_block_tokens_does_not_hit():
    bm = BlockManager(num_blocks=8, block_size=2, enable_prefix_caching=True)
    bm.allocate(0, [1, 2, 3, 4, 0])
    bm.allocate(1, [9, 9, 3, 4, 0])                      # block [3, 4] has a different parent
    assert bm.num_cached_tokens(1) == 0


def test_freed_cached_blocks_are_revived_until_evicted():
    bm = BlockManager(num_blocks=4, block_size=2, enable_prefix_caching=True)
    bm.allocate(0, [1, 2, 3, 4, 5])
    bm.free(0)
    assert bm.num_free_blocks == 4 and bm.num_cached_free_blocks == 2
    bm.allocate(1, [1, 2, 3, 4, 6])
    assert bm.num_cached_tokens(1) == 4
    bm.free(1)
    bm.allocate(2, [7, 8, 9, 10, 11, 12, 13])            # needs all 4 blocks: evicts the cached prefix
    bm.free(2)
    bm.allocate(3, [1, 2, 3, 4, 5])
    assert bm.num_cached_tokens(3) == 0
    bm.check_invariants()


def test_blocks_without_hash_are_reused_before_cached_ones():
    bm = BlockManager(num_blocks=4, block_size=2, enable_prefix_caching=True)
    bm.allocate(0, [1, 2, 3])                            # block of [1, 2] cached, partial [3] not
    bm.free(0)
    bm.allocate(1, [7])                                  # takes an uncached block
    bm.allocate(2, [1, 2, 5])
    assert bm.num_cached_tokens(2) == 2


def test_appended_full_block_becomes_shareable():
    bm = BlockManager(num_blocks=8, block_size=2, enable_prefix_caching=True)
    bm.allocate(0, [1])
    bm.append_token(0, 2)
    bm.append_token(0, 3)
    bm.allocate(1, [1, 2, 4])
    assert bm.num_cached_tokens(1) == 2 and bm.block_table(1)[0] == bm.block_table(0)[0]


def test_can_allocate_prompt_counts_prefix_hits():
    bm = BlockManager(num_blocks=4, block_size=2, enable_prefix_caching=True)
    bm.allocate(0, [1, 2, 3, 4, 5])                      # 3 blocks live, 1 free
    assert not bm.can_allocate(5) and not bm.can_allocate_prompt([9, 9, 9, 9, 9])
    assert bm.can_allocate_prompt([1, 2, 3, 4, 6])       # 2 blocks shared with seq 0: 1 new block
    bm.allocate(1, [1, 2, 3, 4, 6])
    assert bm.num_cached_tokens(1) == 4 and bm.num_free_blocks == 0
    bm.free(0)
    bm.free(1)
    bm.allocate(2, [7])
    bm.allocate(3, [8])                                  # uncached blocks go first: both hits survive
    assert not bm.can_allocate_prompt([1, 2, 3, 4, 6])   # reviving 2 cached free blocks + 1 new > 2 free
    assert bm.can_allocate_prompt([1, 2, 3])


def test_out_of_blocks_leaves_state_unchanged():
    bm = BlockManager(num_blocks=2, block_size=2)
    bm.allocate(0, [1, 2, 3])
    bm.fork(0, 1)
    before = snapshot(bm)
    assert not bm.can_allocate(1) and not bm.can_append(1)
    with pytest.raises(OutOfBlocks):
        bm.allocate(2, [1])
    with pytest.raises(OutOfBlocks):
        bm.append_token(1, 4)                            # would need a copy-on-write block
    assert snapshot(bm) == before


def test_bad_calls_raise_clear_errors_without_changes():
    bm = BlockManager(num_blocks=4, block_size=2)
    bm.allocate(0, [1, 2])
    before = snapshot(bm)
    with pytest.raises(ValueError, match="already has blocks"):
        bm.allocate(0, [3])
    with pytest.raises(KeyError, match="never allocated"):
        bm.free(7)
    with pytest.raises(ValueError, match="outside"):
        bm.slot_mapping(0, 0, 3)
    with pytest.raises(ValueError, match="already has blocks"):
        bm.fork(0, 0)
    assert snapshot(bm) == before
    bm.free(0)
    with pytest.raises(KeyError):
        bm.free(0)                                       # no double free
    with pytest.raises(ValueError):
        BlockManager(0, 16)


def test_demo_runs(capsys):
    from ch04_kvcache.block_manager import main

    assert main([]) == 0
    assert "CopyOnWrite" in capsys.readouterr().out


# ---------------------------------------------------------------------------- state machine
class BlockManagerMachine(RuleBasedStateMachine):
    """Random operations, checked against a simulated KV memory: every slot a sequence reads must hold
    the token the sequence put at that position, and no shared block is ever written."""

    @initialize(num_blocks=st.integers(1, 12), block_size=st.integers(1, 4), prefix=st.booleans())
    def setup(self, num_blocks: int, block_size: int, prefix: bool) -> None:
        self.bm = BlockManager(num_blocks, block_size, enable_prefix_caching=prefix)
        self.memory: dict[int, int] = {}                 # physical slot -> token whose K/V it holds
        self.tokens: dict[int, list[int]] = {}           # the expected content of each live sequence
        self.next_id = 0
        self.out_of_blocks_seen = 0

    def _write(self, seq: int, pos: int) -> None:
        slot = self.bm.slot_mapping(seq, pos, pos + 1)[0]
        assert self.bm.ref_count(slot // self.bm.block_size) == 1, "write into a shared block"
        self.memory[slot] = self.tokens[seq][pos]

    @rule(prompt=st.lists(st.integers(0, 2), max_size=10))
    def allocate(self, prompt: list[int]) -> None:
        seq, before = self.next_id, snapshot(self.bm)
        self.next_id += 1
        free = self.bm.num_free_blocks
        predicted = self.bm.can_allocate_prompt(prompt)
        hit_tokens = self.bm.prefix_hit_tokens(prompt)
        try:
            table = self.bm.allocate(seq, prompt)
        except OutOfBlocks:
            assert snapshot(self.bm) == before
            assert self.bm.enable_prefix_caching or not self.bm.can_allocate(len(prompt))
            assert not predicted
            self.out_of_blocks_seen += 1
            return
        assert predicted
        self.tokens[seq] = list(prompt)
        cached = self.bm.num_cached_tokens(seq)
        assert cached == hit_tokens
        assert cached % self.bm.block_size == 0 and cached <= max(len(prompt) - 1, 0)
        if not self.bm.enable_prefix_caching:
            assert cached == 0 and free - self.bm.num_free_blocks == len(table)
        for pos in range(cached, len(prompt)):           # the engine computes only the uncached tokens
            self._write(seq, pos)

    @precondition(lambda self: self.tokens)
    @rule(data=st.data(), token=st.integers(0, 2))
    def append(self, data, token: int) -> None:
        seq = data.draw(st.sampled_from(sorted(self.tokens)))
        before, could = snapshot(self.bm), self.bm.can_append(seq)
        try:
            cow = self.bm.append_token(seq, token)
        except OutOfBlocks:
            assert snapshot(self.bm) == before and not could
            self.out_of_blocks_seen += 1
            return
        assert could
        if cow is not None:                              # the caller copies the block's K/V
            bs = self.bm.block_size
            for off in range(bs):
                if cow.src * bs + off in self.memory:
                    self.memory[cow.dst * bs + off] = self.memory[cow.src * bs + off]
        self.tokens[seq].append(token)
        self._write(seq, len(self.tokens[seq]) - 1)

    @precondition(lambda self: self.tokens)
    @rule(data=st.data())
    def fork(self, data) -> None:
        parent = data.draw(st.sampled_from(sorted(self.tokens)))
        used = self.bm.num_used_blocks
        child = self.next_id
        self.next_id += 1
        self.bm.fork(parent, child)
        self.tokens[child] = list(self.tokens[parent])
        assert self.bm.num_used_blocks == used           # sharing costs no block
        assert self.bm.num_cached_tokens(child) == len(self.tokens[child])

    @precondition(lambda self: self.tokens)
    @rule(data=st.data())
    def free(self, data) -> None:
        seq = data.draw(st.sampled_from(sorted(self.tokens)))
        self.bm.free(seq)
        del self.tokens[seq]
        with pytest.raises(KeyError):
            self.bm.free(seq)

    @invariant()
    def bookkeeping_is_consistent(self) -> None:
        self.bm.check_invariants()
        live_blocks = {b for s in self.tokens for b in self.bm.block_table(s)}
        assert self.bm.num_used_blocks == len(live_blocks)   # no leak: used == referenced
        for b in live_blocks:
            assert self.bm.ref_count(b) == sum(b in self.bm.block_table(s) for s in self.tokens)

    @invariant()
    def every_sequence_reads_its_own_tokens(self) -> None:
        for seq, toks in self.tokens.items():
            slots = self.bm.slot_mapping(seq, 0, len(toks))
            assert len(set(slots)) == len(slots)
            assert [self.memory.get(s) for s in slots] == toks, f"sequence {seq} reads wrong K/V"

    def teardown(self) -> None:
        for seq in list(self.tokens):
            self.bm.free(seq)
        self.bm.check_invariants()
        assert self.bm.num_free_blocks == self.bm.num_blocks   # everything comes back


BlockManagerMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                                 suppress_health_check=[HealthCheck.too_slow])
test_block_manager_state_machine = BlockManagerMachine.TestCase
