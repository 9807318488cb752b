"""Chapter 5 test helpers: a fake model runner that checks the scheduler's bookkeeping token by token.

Like vLLM's scheduler tests, no torch model is needed: :class:`FakeRunner` keeps a "KV cache" of token
ids (one int per physical slot), writes every scheduled token at its slot, reads each sequence's whole
context back through its block table, asserts it equals the sequence's real tokens, and "samples" a
token that is a deterministic function of that context. So a wrong slot, a stale prefix-cache block or a
bad recompute after preemption shows up as an assertion or as different outputs.
"""

from __future__ import annotations

from ch05_scheduling.scheduler import Scheduler, SchedulerOutput
from ch05_scheduling.sequence import SamplingParams, Sequence


class FakeRunner:
    def __init__(self, num_slots: int, block_size: int, vocab: int = 1000, eos_token_id: int | None = None):
        self.slots: list[tuple[int, int] | None] = [None] * num_slots  # (position, token) in each slot
        self.block_size = block_size
        self.vocab = vocab
        self.eos = eos_token_id
        self.steps = 0

    def next_token(self, context: list[int]) -> int:
        h = 0
        for t in context:
            h = (h * 1_000_003 + t) % 2_147_483_647
        tok = 3 + h % (self.vocab - 3)
        return tok

    def run(self, out: SchedulerOutput, sched: Scheduler) -> dict[int, int]:
        self.steps += 1
        for cow in out.copies:
            bs = self.block_size
            self.slots[cow.dst * bs:(cow.dst + 1) * bs] = self.slots[cow.src * bs:(cow.src + 1) * bs]
        for s in out.scheduled:
            for i, (tok, slot) in enumerate(zip(s.token_ids, s.slot_mapping, strict=True)):
                self.slots[slot] = (s.start_pos + i, tok)
        sampled = {}
        for s in out.scheduled:
            seq = sched.seqs[s.seq_id]
            bs = self.block_size
            ctx = [self.slots[s.block_table[p // bs] * bs + p % bs] for p in range(s.context_len)]
            expect = [(p, seq.token_at(p)) for p in range(s.context_len)]
            assert ctx == expect, f"seq {s.seq_id}: cache holds {ctx[:8]}... expected {expect[:8]}..."
            if s.sample:
                sampled[s.seq_id] = self.next_token([t for _, t in ctx])
        return sampled


def drive(sched: Scheduler, runner: FakeRunner, *, arrivals: dict[float, list[Sequence]] | None = None,
          max_steps: int = 10_000, check=None) -> list[SchedulerOutput]:
    """Run the schedule -> run -> update loop with a clock that ticks 1.0 per step."""
    outs: list[SchedulerOutput] = []
    pending = sorted((arrivals or {}).items())
    now = 0.0
    for _ in range(max_steps):
        while pending and pending[0][0] <= now:
            for seq in pending.pop(0)[1]:
                sched.add(seq)
        if not sched.has_unfinished and not pending:
            return outs
        out = sched.schedule(now)
        if check is not None:
            check(out, sched)
        sched.block_manager.check_invariants()
        if out.is_empty:
            now += 1.0
            continue
        outs.append(out)
        sampled = runner.run(out, sched)
        now += 1.0
        sched.update(out, sampled, now)
    raise AssertionError("the scheduler did not finish")


def make_seqs(specs, *, start_id: int = 0, tenant=None, **kw) -> list[Sequence]:
    """``specs`` = [(prompt_len, max_tokens), ...] -> sequences with distinct prompts."""
    out = []
    for i, (plen, olen) in enumerate(specs):
        sid = start_id + i
        prompt = [10 + (sid * 7 + j) % 900 for j in range(plen)]
        out.append(Sequence(sid, prompt, SamplingParams(max_tokens=olen, ignore_eos=True),
                            tenant=tenant or "default", **kw))
    return out
