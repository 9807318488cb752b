"""Exercise 5.1: static vs continuous batching in steps; checked against the real scheduler too."""

from __future__ import annotations

import random

import pytest
from ch05_fakes import FakeRunner, drive, make_seqs

from ch05_scheduling.scheduler import Scheduler, SchedulerConfig


def test_the_worked_example(exercise):
    mod = exercise("ch05_scheduling", "ex5_1_static_vs_continuous")
    static = mod.count_steps([10, 1, 1, 1], 2, "static")
    cont = mod.count_steps([10, 1, 1, 1], 2, "continuous")
    assert static.steps == 11 and static.finish_step == [10, 1, 11, 11]
    assert cont.steps == 10 and cont.finish_step == [10, 1, 2, 3]
    assert static.utilization == pytest.approx(13 / 22)
    assert cont.utilization == pytest.approx(13 / 20)


def test_continuous_never_takes_longer_and_bad_input_is_refused(exercise):
    mod = exercise("ch05_scheduling", "ex5_1_static_vs_continuous")
    rng = random.Random(0)
    for _ in range(50):
        lens = [rng.randint(1, 30) for _ in range(rng.randint(1, 12))]
        bs = rng.randint(1, 5)
        assert mod.count_steps(lens, bs, "continuous").steps <= mod.count_steps(lens, bs, "static").steps
    with pytest.raises(ValueError):
        mod.count_steps([1, 2], 2, "lottery")
    with pytest.raises(ValueError):
        mod.count_steps([0], 1, "static")


@pytest.mark.parametrize("mode", ["static", "continuous"])
def test_matches_the_engine_scheduler(exercise, mode):
    mod = exercise("ch05_scheduling", "ex5_1_static_vs_continuous")
    lens = [7, 2, 9, 3, 3, 12, 1, 5]
    cfg = SchedulerConfig(num_blocks=256, block_size=4, max_num_seqs=3, max_num_batched_tokens=256)
    sched = Scheduler(cfg, mode)
    seqs = make_seqs([(2, n) for n in lens])
    steps = drive(sched, FakeRunner(cfg.capacity_tokens, cfg.block_size), arrivals={0.0: seqs})
    res = mod.count_steps(lens, 3, mode)
    assert len(steps) == res.steps
    assert [int(s.finish_time) for s in seqs] == res.finish_step
