"""The iteration-level scheduler: which tokens of which requests run in the next model step (5.3, 5.4).

Book sections: 5.3.2 Continuous Batching原理, 5.4.2 预分配vs动态分配 (blocks are taken one at a time as
a sequence grows, from ch04's :class:`BlockManager`), 5.4.3 迭代级调度, 5.4.4 优先级队列.

Every call to :meth:`Scheduler.schedule` builds one step under two budgets -- at most
``max_num_seqs`` running requests and at most ``max_num_batched_tokens`` new tokens -- in vLLM v1's
unified way: running requests first (a decode token each, or the next chunk of an unfinished prefill),
then, if the policy opens admission and nobody had to be preempted, waiting requests in policy order
(a whole prompt, or a chunk of it with chunked prefill). When a running request needs a block and none
is free, the policy's victim is *preempted by recompute*: its blocks are freed and it goes back to the
queue, to prefill its prompt and the tokens generated so far when it is admitted again. Prefix caching
is the block manager's: an admitted prompt starts with ``num_cached_tokens`` already computed. Parallel
sampling (``n > 1``, :mod:`ch05_scheduling.sequence_group`): the group's parent is prefilled, the step
that ends its prefill samples every choice (``ScheduledSeq.fork_ids``), and :meth:`Scheduler.update`
forks the parent's blocks into the children. A request that can never run is refused by
:meth:`Scheduler.add` with ``admission.RequestRejected`` before it takes anything.

The scheduler knows no torch: it hands the runner a :class:`SchedulerOutput` (dataclass message, like
vLLM's) and takes back the sampled token ids in :meth:`Scheduler.update`. Tests drive it with fake
model outputs; the simulator drives it with a cost model. ``python -m ch05_scheduling.scheduler`` prints
a few steps of a toy workload.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ch04_kvcache.block_manager import BlockManager, CopyOnWrite, block_hash
from ch05_scheduling.admission import RequestRejected, check_admissible, max_choices  # noqa: F401 - re-exported
from ch05_scheduling.policies import Policy, make_policy
from ch05_scheduling.sequence import FinishReason, SamplingParams, Sequence, SequenceStatus, TokenLogprob
from ch05_scheduling.sequence_group import SequenceGroup
from common.errors import UsageError


@dataclass(slots=True)
class SchedulerConfig:
    """The knobs of 5.6 (names as in vLLM). Defaults suit the embedded model on a CPU."""

    num_blocks: int = 1024
    block_size: int = 16
    max_num_seqs: int = 32
    max_num_batched_tokens: int = 512
    enable_chunked_prefill: bool = True
    enable_prefix_caching: bool = False
    max_model_len: int = 2048

    def __post_init__(self) -> None:
        for name in ("num_blocks", "block_size", "max_num_seqs", "max_num_batched_tokens", "max_model_len"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def capacity_tokens(self) -> int:
        return self.num_blocks * self.block_size


@dataclass(slots=True)
class ScheduledSeq:
    """One sequence's share of a step: feed ``token_ids`` at positions ``start_pos ...``."""

    seq_id: int
    token_ids: list[int]          # the new tokens of this step (len = num_new_tokens)
    start_pos: int                # = tokens already computed before this step
    block_table: list[int]
    slot_mapping: list[int]       # physical slot of each new token
    sample: bool                  # the step reaches the sequence's end: sample its next token
    params: SamplingParams
    num_output_tokens: int        # outputs so far (per-request seeded sampling uses it as a step index)
    # the sequence's own lists (no copy), read by the sampler for penalties; outputs as before this step
    prompt_token_ids: list[int] = field(default_factory=list)
    output_token_ids: list[int] = field(default_factory=list)
    # parallel sampling: the step that ends a group's prefill also samples these choices (same logits row)
    fork_ids: list[int] = field(default_factory=list)
    fork_params: list[SamplingParams] = field(default_factory=list)

    @property
    def num_new_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def context_len(self) -> int:
        return self.start_pos + len(self.token_ids)

    @property
    def is_prefill(self) -> bool:
        return len(self.token_ids) > 1 or self.start_pos == 0


@dataclass(slots=True)
class SchedulerOutput:
    """What runs in the next step; the runner needs nothing else (no global context)."""

    scheduled: list[ScheduledSeq] = field(default_factory=list)
    copies: list[CopyOnWrite] = field(default_factory=list)   # copy-on-write block copies, do them first
    preempted_ids: list[int] = field(default_factory=list)
    num_waiting: int = 0
    kv_usage: float = 0.0

    @property
    def num_batched_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.scheduled)

    @property
    def num_prefill_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.scheduled if s.is_prefill)

    @property
    def num_decode_tokens(self) -> int:
        return self.num_batched_tokens - self.num_prefill_tokens

    @property
    def num_seqs(self) -> int:
        return len(self.scheduled)

    @property
    def is_empty(self) -> bool:
        return not self.scheduled


def prefix_hit_tokens(bm: BlockManager, token_ids: list[int]) -> int:
    """Prompt tokens the prefix cache would serve, without allocating (the blocks' chained hashes).

    The block manager offers no side-effect-free probe, so this walks its hash map the way
    ``BlockManager.allocate`` does; tests/ch05 checks the two agree.
    """
    if not bm.enable_prefix_caching:
        return 0
    bs, parent, hit = bm.block_size, None, 0
    for i in range((len(token_ids) - 1) // bs):
        block = token_ids[i * bs:(i + 1) * bs]
        parent = block_hash(parent, block)
        if bm._lookup(parent, block) is None:  # noqa: SLF001 - read-only use of ch04's lookup
            break
        hit += bs
    return hit


class Scheduler:
    """Owns the waiting queue, the running batch and the block manager; see the module docstring."""

    def __init__(self, config: SchedulerConfig | None = None, policy: Policy | str = "continuous") -> None:
        self.config = config or SchedulerConfig()
        self.policy = make_policy(policy) if isinstance(policy, str) else policy
        self.block_manager = BlockManager(self.config.num_blocks, self.config.block_size,
                                          enable_prefix_caching=self.config.enable_prefix_caching)
        self.waiting: list[Sequence] = []
        self.running: list[Sequence] = []
        self.seqs: dict[int, Sequence] = {}
        self.groups: dict[int, SequenceGroup] = {}       # n > 1 requests by request id (= parent seq id)
        self._group_of: dict[int, SequenceGroup] = {}    # every member's seq id -> its group
        self.num_preemptions = 0

    # ------------------------------------------------------------------ requests in and out
    def add(self, seq: Sequence, group: SequenceGroup | None = None) -> None:
        cfg = self.config
        if seq.seq_id in self.seqs:
            raise UsageError(f"request id {seq.seq_id} is already in the scheduler")
        check_admissible(cfg, self.policy, seq, group)
        seq.status = SequenceStatus.WAITING
        self.seqs[seq.seq_id] = seq
        self.waiting.append(seq)
        if group is not None:
            self.groups[group.request_id] = group
            self._group_of.update((m.seq_id, group) for m in group.seqs)

    def add_group(self, group: SequenceGroup) -> None:
        """An ``n > 1`` request: only its parent enters the queue; the children join at the fork."""
        self.add(group.parent, group)

    def abort(self, seq_id: int, now: float) -> Sequence | None:
        """Drop a request wherever it is and free its blocks; None if it is unknown or already done."""
        group = self.groups.get(seq_id)
        if group is not None:          # the request id of an n > 1 request: every choice still alive
            live = [m for m in group.seqs if not m.is_finished]
            for m in live:
                self._finish(m, FinishReason.ABORT, now)
            return group.parent if live else None
        seq = self.seqs.get(seq_id)
        if seq is None or seq.is_finished:
            return None
        self._finish(seq, FinishReason.ABORT, now)
        return seq

    def finish(self, seq_id: int, reason: FinishReason, now: float) -> None:
        """End a request for a reason the engine found (a stop string)."""
        seq = self.seqs.get(seq_id)
        if seq is not None and not seq.is_finished:
            self._finish(seq, reason, now)

    def _finish(self, seq: Sequence, reason: FinishReason, now: float) -> None:
        if seq in self.running:
            self.running.remove(seq)
            self.block_manager.free(seq.seq_id)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        seq.finish(reason, now)
        self.seqs.pop(seq.seq_id, None)   # an unforked child was never in it
        group = self._group_of.get(seq.seq_id)
        if group is not None and group.is_finished:
            del self.groups[group.request_id]
            for m in group.seqs:
                del self._group_of[m.seq_id]

    @property
    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    @property
    def kv_usage(self) -> float:
        return self.block_manager.num_used_blocks / self.config.num_blocks

    def next_wakeup(self, now: float) -> float | None:
        return self.policy.next_wakeup(now, self.running, self.waiting)

    def max_choices(self, prompt_len: int, max_tokens: int) -> int:
        """The largest ``n`` :meth:`add` accepts for a request of this shape (``admission.max_choices``)."""
        return max_choices(self.config, self.policy, prompt_len, max_tokens)

    # ------------------------------------------------------------------ one step
    def schedule(self, now: float) -> SchedulerOutput:
        cfg, policy = self.config, self.policy
        out = SchedulerOutput()
        budget = cfg.max_num_batched_tokens
        candidates = policy.order(self.running, now, queue_len=len(self.waiting))
        while candidates and budget > 0:
            seq = candidates.pop(0)
            n = self._num_new_tokens(seq, budget)
            if n == 0:
                continue
            while not self._reserve(seq, n, out.copies):
                victim = policy.victim(candidates + [seq], now)
                self._preempt(victim)
                out.preempted_ids.append(victim.seq_id)
                if victim is seq:
                    break
                candidates.remove(victim)
            else:
                out.scheduled.append(self._scheduled(seq, n))
                budget -= n

        cap = policy.max_running(cfg.max_num_seqs)
        static = policy.batching != "continuous"
        if not out.preempted_ids and policy.admission_open(now, self.running, self.waiting, cfg.max_num_seqs):
            for seq in policy.order(self.waiting, now, queue_len=len(self.waiting)):
                seats = len(self.running) + self._seats_held() + self._seats_to_hold(seq)
                if seats > cap or (budget == 0 and not static):
                    break
                # Blocks only for the tokens this step computes (vLLM v1): a block whose hash the
                # manager registers is then always written before anyone can hit it in the prefix cache.
                hit = prefix_hit_tokens(self.block_manager, seq.all_token_ids)
                first = min(seq.num_tokens, hit + budget)
                if not cfg.enable_chunked_prefill and seq.num_tokens > hit + budget:
                    first = 0
                if first == 0 and not static:
                    break
                if not self.block_manager.can_allocate(first):
                    break
                self.block_manager.allocate(seq.seq_id, seq.all_token_ids[:first])
                cached = self.block_manager.num_cached_tokens(seq.seq_id)  # < first: the last one runs
                seq.num_computed_tokens = seq.num_cached_tokens = cached
                self.waiting.remove(seq)
                self.running.append(seq)
                seq.status = SequenceStatus.RUNNING
                if seq.first_scheduled_time is None:
                    seq.first_scheduled_time = now
                policy.on_admit(seq)
                if first:
                    out.scheduled.append(self._scheduled(seq, first - cached))
                    budget -= first - cached
        out.num_waiting = len(self.waiting)
        out.kv_usage = self.kv_usage
        return out

    def _unforked_group(self, seq: Sequence) -> SequenceGroup | None:
        """The group whose parent ``seq`` is, while its children still wait for the fork."""
        group = self._group_of.get(seq.seq_id)
        return group if group is not None and not group.forked and group.parent is seq else None

    def _seats_to_hold(self, seq: Sequence) -> int:
        group = self._unforked_group(seq)
        return group.n if group is not None else 1

    def _seats_held(self) -> int:
        """Seats in the running batch held for children not forked yet (their parent is running)."""
        return sum(g.n - 1 for g in self.groups.values() if not g.forked and g.parent.status is SequenceStatus.RUNNING)

    def _num_new_tokens(self, seq: Sequence, budget: int) -> int:
        n = seq.num_uncomputed_tokens
        if n <= budget:
            return n
        return budget if self.config.enable_chunked_prefill else 0

    def _reserve(self, seq: Sequence, n: int, copies: list[CopyOnWrite]) -> bool:
        """Make sure slots exist for the first ``num_computed + n`` tokens (appending blocks as needed)."""
        bm, target = self.block_manager, seq.num_computed_tokens + n
        have = bm.num_tokens(seq.seq_id)
        if have >= target:
            return True
        # all-or-nothing, so a preempted sequence never leaves a registered-but-unwritten block behind
        new_blocks = -(-target // bm.block_size) - len(bm.block_table(seq.seq_id))
        if not bm.can_append(seq.seq_id) or new_blocks > bm.num_free_blocks:
            return False
        while bm.num_tokens(seq.seq_id) < target:
            cow = bm.append_token(seq.seq_id, seq.token_at(bm.num_tokens(seq.seq_id)))
            if cow is not None:
                copies.append(cow)
        return True

    def _preempt(self, seq: Sequence) -> None:
        self.block_manager.free(seq.seq_id)
        self.running.remove(seq)
        seq.reset_for_recompute()
        self.waiting.append(seq)
        self.num_preemptions += 1

    def _scheduled(self, seq: Sequence, n: int) -> ScheduledSeq:
        start = seq.num_computed_tokens
        bm = self.block_manager
        group = self._unforked_group(seq) if start + n == seq.num_tokens else None
        return ScheduledSeq(
            seq_id=seq.seq_id,
            token_ids=[seq.token_at(i) for i in range(start, start + n)],
            start_pos=start,
            block_table=list(bm.block_table(seq.seq_id)),
            slot_mapping=list(bm.slot_mapping(seq.seq_id, start, start + n)),
            sample=start + n == seq.num_tokens,
            params=seq.params,
            num_output_tokens=seq.num_output_tokens,
            prompt_token_ids=seq.prompt_token_ids,
            output_token_ids=seq.output_token_ids,
            fork_ids=[c.seq_id for c in group.children] if group else [],
            fork_params=[c.params for c in group.children] if group else [],
        )

    # ------------------------------------------------------------------ after the step
    def update(self, out: SchedulerOutput, sampled: Mapping[int, int], now: float,
               logprobs: Mapping[int, TokenLogprob] | None = None) -> list[Sequence]:
        """Advance every scheduled sequence and record sampled tokens (and their logprobs, when the runner
        computed them); return the ones that finished."""
        finished: list[Sequence] = []
        for s in out.scheduled:
            seq = self.seqs.get(s.seq_id)
            if seq is None or seq.status is not SequenceStatus.RUNNING:
                continue  # aborted while the step ran
            seq.num_computed_tokens += s.num_new_tokens
            self.policy.on_service(seq, s.num_new_tokens if s.is_prefill else 0, 0 if s.is_prefill else 1)
            if not s.sample:
                continue
            members = [seq]
            if s.fork_ids:   # the prompt is computed: the children take the parent's blocks, then a token each
                members += self._fork(self.groups[seq.seq_id], now)
            for m in members:
                reason = m.append_token(sampled[m.seq_id], now, logprobs.get(m.seq_id) if logprobs else None)
                if reason is None and m.num_tokens >= self.config.max_model_len:
                    reason = FinishReason.LENGTH
                if reason is not None:
                    self._finish(m, reason, now)
                    finished.append(m)
        return finished

    def _fork(self, group: SequenceGroup, now: float) -> list[Sequence]:
        """Share the parent's blocks with every child (ref + 1) and run the children from here on."""
        parent, bm = group.parent, self.block_manager
        group.forked = True
        for child in group.children:
            bm.fork(parent.seq_id, child.seq_id)
            child.num_computed_tokens = parent.num_computed_tokens
            child.num_cached_tokens = parent.num_cached_tokens
            child.first_scheduled_time = parent.first_scheduled_time
            child.status = SequenceStatus.RUNNING
            self.seqs[child.seq_id] = child
            self.running.append(child)
        return group.children


def main(argv: list[str] | None = None) -> int:
    from common.cli import make_parser

    parser = make_parser("python -m ch05_scheduling.scheduler", __doc__)
    parser.add_argument("--policy", default="continuous", help="a policy name (see ch05_scheduling.policies)")
    args = parser.parse_args(argv)
    sched = Scheduler(SchedulerConfig(num_blocks=16, block_size=4, max_num_batched_tokens=8, max_num_seqs=4),
                      args.policy)
    for i, (plen, olen) in enumerate([(6, 3), (3, 6), (9, 2), (2, 2)]):
        sched.add(Sequence(i, list(range(10, 10 + plen)), SamplingParams(max_tokens=olen, ignore_eos=True)))
    step = 0
    while sched.has_unfinished:
        out = sched.schedule(float(step))
        parts = [f"r{s.seq_id}:{'P' if s.is_prefill else 'D'}{s.num_new_tokens}" for s in out.scheduled]
        print(f"step {step:2d}  tokens={out.num_batched_tokens:2d}  " + " ".join(parts))
        done = sched.update(out, {s.seq_id: 99 for s in out.scheduled if s.sample}, float(step + 1))
        for seq in done:
            print(f"         r{seq.seq_id} finished ({seq.finish_reason.value})")
        step += 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
