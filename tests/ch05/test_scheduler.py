"""Scheduler behaviour on CPU with a fake model (no torch): budgets, chunking, preemption, prefix cache."""

from __future__ import annotations

import pytest
from ch05_fakes import FakeRunner, drive, make_seqs

from ch05_scheduling.scheduler import Scheduler, SchedulerConfig
from ch05_scheduling.sequence import FinishReason, SamplingParams, Sequence, SequenceStatus
from common.cli import UsageError


def outputs_of(config: SchedulerConfig, specs, policy="continuous", **kw) -> dict[int, list[int]]:
    sched = Scheduler(config, policy)
    seqs = make_seqs(specs, **kw)
    runner = FakeRunner(config.capacity_tokens, config.block_size)
    drive(sched, runner, arrivals={0.0: seqs})
    assert all(s.is_finished for s in seqs)
    return {s.seq_id: s.output_token_ids for s in seqs}


SPECS = [(13, 5), (3, 9), (40, 2), (7, 7), (22, 4), (5, 12)]


def test_every_request_gets_exactly_max_tokens_and_blocks_are_returned():
    cfg = SchedulerConfig(num_blocks=64, block_size=4, max_num_seqs=4, max_num_batched_tokens=16)
    sched = Scheduler(cfg)
    seqs = make_seqs(SPECS)
    drive(sched, FakeRunner(cfg.capacity_tokens, cfg.block_size), arrivals={0.0: seqs})
    assert [s.num_output_tokens for s in seqs] == [o for _, o in SPECS]
    assert all(s.finish_reason is FinishReason.LENGTH for s in seqs)
    assert sched.block_manager.num_free_blocks == cfg.num_blocks
    assert not sched.has_unfinished


def test_budgets_hold_every_step():
    cfg = SchedulerConfig(num_blocks=64, block_size=4, max_num_seqs=3, max_num_batched_tokens=10)

    def check(out, sched):
        assert out.num_batched_tokens <= cfg.max_num_batched_tokens
        assert len(sched.running) <= cfg.max_num_seqs

    sched = Scheduler(cfg)
    outs = drive(sched, FakeRunner(cfg.capacity_tokens, cfg.block_size), arrivals={0.0: make_seqs(SPECS)},
                 check=check)
    # the 40-token prompt cannot fit one step of 10 tokens: it was chunked
    chunks = [s.num_new_tokens for o in outs for s in o.scheduled if s.seq_id == 2 and not s.sample]
    assert len(chunks) >= 3 and max(chunks) <= 10


def test_outputs_do_not_depend_on_batching_chunking_or_policy():
    roomy = SchedulerConfig(num_blocks=256, block_size=4, max_num_seqs=16, max_num_batched_tokens=256)
    alone = {}
    for i, spec in enumerate(SPECS):
        alone.update(outputs_of(roomy, [spec], start_id=i) if i == 0 else
                     {i: outputs_of(roomy, [spec], start_id=i)[i]})
    tight = SchedulerConfig(num_blocks=64, block_size=4, max_num_seqs=3, max_num_batched_tokens=8)
    for policy in ("continuous", "static", "sjf", "priority", "round_robin", "fair_share", "adaptive", "fifo"):
        assert outputs_of(tight, SPECS, policy) == alone, policy


def test_preemption_by_recompute_gives_the_same_tokens():
    roomy = SchedulerConfig(num_blocks=256, block_size=4, max_num_seqs=8, max_num_batched_tokens=64)
    tiny = SchedulerConfig(num_blocks=14, block_size=4, max_num_seqs=8, max_num_batched_tokens=64)
    specs = [(9, 20), (6, 22), (11, 18), (5, 24)]
    sched = Scheduler(tiny)
    seqs = make_seqs(specs)
    drive(sched, FakeRunner(tiny.capacity_tokens, tiny.block_size), arrivals={0.0: seqs})
    assert sched.num_preemptions > 0
    assert sum(s.num_preemptions for s in seqs) == sched.num_preemptions
    assert {s.seq_id: s.output_token_ids for s in seqs} == outputs_of(roomy, specs)
    assert sched.block_manager.num_free_blocks == tiny.num_blocks


def test_without_chunked_prefill_a_prompt_over_the_budget_is_refused():
    cfg = SchedulerConfig(num_blocks=64, block_size=4, max_num_batched_tokens=16, enable_chunked_prefill=False)
    sched = Scheduler(cfg)
    with pytest.raises(UsageError, match="chunked prefill"):
        sched.add(make_seqs([(20, 2)])[0])
    # and prompts that fit run whole: one prefill step each
    outs = drive(sched, FakeRunner(cfg.capacity_tokens, cfg.block_size), arrivals={0.0: make_seqs([(10, 2), (9, 3)])})
    assert all(s.sample for o in outs for s in o.scheduled)


def test_a_request_larger_than_the_cache_is_refused():
    sched = Scheduler(SchedulerConfig(num_blocks=4, block_size=4))
    with pytest.raises(UsageError, match="KV cache"):
        sched.add(make_seqs([(10, 10)])[0])


def test_abort_frees_blocks_of_running_and_waiting_requests():
    cfg = SchedulerConfig(num_blocks=32, block_size=4, max_num_seqs=1, max_num_batched_tokens=64)
    sched = Scheduler(cfg)
    a, b = make_seqs([(10, 50), (6, 5)])
    sched.add(a)
    sched.add(b)
    out = sched.schedule(0.0)
    sched.update(out, {a.seq_id: 7}, 1.0)
    assert a.status is SequenceStatus.RUNNING and sched.block_manager.num_used_blocks > 0
    assert sched.abort(a.seq_id, 1.0) is a
    assert a.finish_reason is FinishReason.ABORT and sched.block_manager.num_used_blocks == 0
    assert sched.abort(b.seq_id, 1.0) is b and not sched.has_unfinished
    assert sched.abort(b.seq_id, 1.0) is None
    sched.block_manager.check_invariants()


def test_eos_stops_a_request_unless_ignore_eos():
    cfg = SchedulerConfig(num_blocks=32, block_size=4)
    for ignore, expect in ((False, FinishReason.STOP), (True, FinishReason.LENGTH)):
        sched = Scheduler(cfg)
        seq = Sequence(0, [5, 6, 7], SamplingParams(max_tokens=4, ignore_eos=ignore), eos_token_ids=(2,))
        sched.add(seq)
        while sched.has_unfinished:
            out = sched.schedule(0.0)
            sched.update(out, {s.seq_id: 2 for s in out.scheduled if s.sample}, 1.0)
        assert seq.finish_reason is expect
        assert seq.num_output_tokens == (1 if not ignore else 4)


def test_prefix_caching_skips_the_shared_prefix_and_keeps_outputs():
    cfg = SchedulerConfig(num_blocks=64, block_size=4, max_num_batched_tokens=8, enable_prefix_caching=True)
    system = list(range(100, 120))                          # 20 shared tokens = 5 blocks
    seqs = [Sequence(i, system + [200 + i, 300 + i], SamplingParams(max_tokens=3, ignore_eos=True))
            for i in range(3)]
    sched = Scheduler(cfg)
    # arrivals one step apart: the later ones find the prefix while the first is still mid-prefill
    drive(sched, FakeRunner(cfg.capacity_tokens, cfg.block_size), arrivals={0.0: seqs[:1], 1.0: seqs[1:2],
                                                                            4.0: seqs[2:]})
    assert seqs[2].num_cached_tokens == 20
    plain = SchedulerConfig(num_blocks=64, block_size=4, max_num_batched_tokens=8)
    ref = Scheduler(plain)
    fresh = [Sequence(i, s.prompt_token_ids, SamplingParams(max_tokens=3, ignore_eos=True)) for i, s in enumerate(seqs)]
    drive(ref, FakeRunner(plain.capacity_tokens, plain.block_size), arrivals={0.0: fresh})
    assert [s.output_token_ids for s in seqs] == [s.output_token_ids for s in fresh]


def test_unknown_policy_and_bad_params_are_one_sentence_errors():
    with pytest.raises(UsageError, match="unknown policy"):
        Scheduler(SchedulerConfig(), "lottery")
    with pytest.raises(UsageError, match="top_p"):
        SamplingParams(top_p=0.0)
    with pytest.raises(UsageError, match="empty prompt"):
        Sequence(0, [])
