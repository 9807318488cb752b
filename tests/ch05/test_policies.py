"""Each policy does what its name promises (fake model, logical clock of one tick per step)."""

from __future__ import annotations

from ch05_fakes import FakeRunner, drive, make_seqs

from ch05_scheduling.policies import make_policy
from ch05_scheduling.scheduler import Scheduler, SchedulerConfig, prefix_hit_tokens
from ch05_scheduling.sequence import SamplingParams, Sequence

CFG = SchedulerConfig(num_blocks=128, block_size=4, max_num_seqs=4, max_num_batched_tokens=64)


def run(policy, arrivals, cfg=CFG):
    sched = Scheduler(cfg, policy)
    drive(sched, FakeRunner(cfg.capacity_tokens, cfg.block_size), arrivals=arrivals)
    return sched


def finish_order(seqs):
    return [s.seq_id for s in sorted(seqs, key=lambda s: (s.finish_time, s.seq_id))]


def test_static_batching_admits_nobody_until_the_whole_batch_ends():
    first = make_seqs([(4, 10), (4, 2)])
    late = make_seqs([(4, 2)], start_id=2)
    run("static", {0.0: first, 1.0: late})
    assert late[0].first_scheduled_time >= max(s.finish_time for s in first)
    first = make_seqs([(4, 10), (4, 2)])
    late = make_seqs([(4, 2)], start_id=2)
    run("continuous", {0.0: first, 1.0: late})
    assert late[0].first_scheduled_time == 1.0  # joins the running batch at once


def test_dynamic_batching_waits_for_a_full_batch_or_the_timeout():
    policy = make_policy("dynamic", timeout_s=3.0)
    two = make_seqs([(4, 2), (4, 2)])
    run(policy, {0.0: two})
    assert all(s.first_scheduled_time == 3.0 for s in two)
    four = make_seqs([(4, 2)] * 4)
    run(make_policy("dynamic", timeout_s=3.0), {0.0: four})
    assert all(s.first_scheduled_time == 0.0 for s in four)


def test_fifo_runs_one_request_at_a_time_in_arrival_order():
    seqs = make_seqs([(4, 5), (4, 1), (4, 3)])
    run("fifo", {0.0: seqs})
    assert finish_order(seqs) == [0, 1, 2]
    assert seqs[1].first_scheduled_time >= seqs[0].finish_time


def _priority_workload():
    cfg = SchedulerConfig(num_blocks=128, block_size=4, max_num_seqs=1, max_num_batched_tokens=64)
    low = Sequence(100, [5, 6, 7], SamplingParams(max_tokens=2, ignore_eos=True), priority=5)
    stream = {float(t): [Sequence(t, [8, 9, 10], SamplingParams(max_tokens=2, ignore_eos=True), priority=0,
                                  arrival_time=float(t))] for t in range(0, 40, 2)}
    stream[0.0].append(low)
    return cfg, low, stream


def test_priority_without_aging_starves_and_aging_prevents_it():
    cfg, low, stream = _priority_workload()
    run(make_policy("priority", aging_per_s=0.0), stream, cfg)
    starved = low.first_scheduled_time
    assert starved >= 38.0  # ran only after the whole high-priority stream
    cfg, low, stream = _priority_workload()
    run(make_policy("priority", aging_per_s=1.0), stream, cfg)
    assert low.first_scheduled_time < 12.0


def test_sjf_with_an_oracle_beats_fcfs_and_a_wrong_prediction_costs():
    cfg = SchedulerConfig(num_blocks=128, block_size=4, max_num_seqs=1, max_num_batched_tokens=64)
    lens = [30, 2, 8, 4]

    def mean_latency(policy, predicted):
        seqs = make_seqs([(4, n) for n in lens])
        for s, p in zip(seqs, predicted, strict=True):
            s.predicted_output_len = p
        run(policy, {0.0: seqs}, cfg)
        return sum(s.finish_time for s in seqs) / len(seqs), finish_order(seqs)

    fcfs, _ = mean_latency("continuous", lens)
    oracle, order = mean_latency("sjf", lens)
    wrong, _ = mean_latency("sjf", [1, 40, 20, 30])  # the long job predicted shortest
    assert order == [1, 3, 2, 0]
    assert oracle < fcfs and oracle < wrong


def test_round_robin_interleaves_tenants():
    cfg = SchedulerConfig(num_blocks=128, block_size=4, max_num_seqs=1, max_num_batched_tokens=64)
    a = make_seqs([(4, 3)] * 4, tenant="a")
    b = make_seqs([(4, 3)] * 2, start_id=10, tenant="b")
    run("round_robin", {0.0: a + b}, cfg)
    tenants = [s.tenant for s in sorted(a + b, key=lambda s: s.first_scheduled_time)]
    assert tenants[:4] == ["a", "b", "a", "b"]


def test_fair_share_serves_the_tenant_that_got_less():
    cfg = SchedulerConfig(num_blocks=128, block_size=4, max_num_seqs=1, max_num_batched_tokens=64)
    policy = make_policy("fair_share")
    heavy = make_seqs([(20, 10)], tenant="heavy")
    later = {5.0: make_seqs([(4, 2)], start_id=1, tenant="heavy") + make_seqs([(4, 2)], start_id=2, tenant="light")}
    run(policy, {0.0: heavy, **later}, cfg)
    seqs = {s.seq_id: s for s in later[5.0]}
    assert seqs[2].first_scheduled_time < seqs[1].first_scheduled_time


def test_adaptive_switches_from_fcfs_to_sjf_when_the_queue_grows():
    policy = make_policy("adaptive", adaptive_threshold=2)
    seqs = make_seqs([(4, 9), (4, 1), (4, 5)])
    for s in seqs:
        s.predicted_output_len = s.params.max_tokens
    assert [s.seq_id for s in policy.order(seqs[:2], 0.0)] == [0, 1]          # light load: FCFS
    assert [s.seq_id for s in policy.order(seqs, 0.0)] == [1, 2, 0]           # queue of 3 > 2: SJF


def test_prefix_probe_agrees_with_the_block_manager():
    sched = Scheduler(SchedulerConfig(num_blocks=32, block_size=4, enable_prefix_caching=True))
    bm = sched.block_manager
    bm.allocate(0, list(range(30)))
    for probe in (list(range(30)), list(range(13)) + [99] * 9, [7] * 12, list(range(8))):
        expect = prefix_hit_tokens(bm, probe)
        bm.allocate(1, probe)
        assert bm.num_cached_tokens(1) == expect
        bm.free(1)
