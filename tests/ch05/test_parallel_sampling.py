"""Parallel sampling (n > 1): one prefill, blocks forked copy-on-write, choice i = the request with seed + i."""

from __future__ import annotations

import dataclasses

import pytest

from ch04_kvcache.model import LlamaModel
from ch04_kvcache.sampling import SamplingParams, SamplingParamsError, choice_params
from ch05_scheduling.engine import EngineConfig, LLMEngine
from ch05_scheduling.scheduler import Scheduler, SchedulerConfig
from ch05_scheduling.sequence_group import make_group
from common.cli import UsageError

PROMPT = [5, 9, 17, 3, 44, 81, 12, 7, 7, 30]          # 10 tokens: 2 full blocks of 4 + a partial one


@pytest.fixture
def tiny_model(tiny_hf_model) -> LlamaModel:
    return LlamaModel.from_pretrained(tiny_hf_model[1])


def engine(model, **cfg) -> LLMEngine:
    return LLMEngine(EngineConfig(**{"block_size": 4, "num_blocks": 64, "max_num_batched_tokens": 32, **cfg}),
                     model=model)


def test_n_is_validated_and_choice_i_gets_seed_plus_i():
    with pytest.raises(SamplingParamsError, match="n must be an integer >= 1"):
        SamplingParams(n=0)
    p = SamplingParams(n=3, seed=7, temperature=0.5)
    assert [choice_params(p, i).seed for i in range(3)] == [7, 8, 9]
    assert choice_params(p, 2) == dataclasses.replace(p, n=1, seed=9)
    assert choice_params(SamplingParams(n=2), 1).seed is None


def test_n4_with_seed_equals_four_requests_with_seeds_s_to_s_plus_3(tiny_model):
    sp = SamplingParams(max_tokens=9, temperature=1.0, top_k=40, seed=11, ignore_eos=True, logprobs=1)
    e = engine(tiny_model)
    [group] = e.generate([PROMPT], dataclasses.replace(sp, n=4))
    assert e.scheduler.block_manager.num_free_blocks == 64 and not e._groups and not e.scheduler.groups
    singles = engine(tiny_model).generate([PROMPT] * 4, [dataclasses.replace(sp, seed=11 + i) for i in range(4)])
    assert [c.index for c in group.outputs] == [0, 1, 2, 3]
    assert [c.token_ids for c in group.outputs] == [o.token_ids for o in singles]
    assert [lp.logprob for c in group.outputs for lp in c.logprobs] == pytest.approx(
        [lp.logprob for o in singles for lp in o.logprobs], abs=1e-4)
    assert len({tuple(c.token_ids) for c in group.outputs}) > 1       # the choices really differ
    assert all(c.finish_reason == "length" for c in group.outputs) and group.finished
    assert group.token_ids == group.outputs[0].token_ids               # top-level fields are choice 0's
    # the prompt ran once: the prefill steps computed 10 tokens, not 40
    assert sum(r.features.num_prefill_tokens for r in e.step_log) == len(PROMPT)


def test_fork_shares_the_prompt_blocks_and_copies_the_partial_one(tiny_model):
    e = engine(tiny_model)
    rid = e.add_request(PROMPT, SamplingParams(max_tokens=3, ignore_eos=True, n=3))
    bm = e.scheduler.block_manager
    e.step()                                                            # prefill + fork + 3 first tokens
    tables = [bm.block_table(sid) for sid in (rid, -1, -2)]
    assert tables[0] == tables[1] == tables[2] and bm.num_used_blocks == 3
    assert [bm.ref_count(b) for b in tables[0]] == [3, 3, 3]
    outs = e.step()                                                     # the first decode writes: 2 copies
    assert [len(c.token_ids) for c in outs[0].completions] == [2, 2, 2]
    assert bm.num_used_blocks == 5 and [bm.ref_count(b) for b in tables[0][:2]] == [3, 3]
    assert len({bm.block_table(sid)[2] for sid in (rid, -1, -2)}) == 3
    while e.has_unfinished():
        e.step()
    assert bm.num_free_blocks == 64


def test_streaming_outputs_carry_every_choice_and_n1_is_unchanged(tiny_model):
    e = engine(tiny_model)
    e.add_request(PROMPT, SamplingParams(max_tokens=4, temperature=1.0, seed=3, n=2, ignore_eos=True))
    e.add_request([4, 5, 6], SamplingParams(max_tokens=4, ignore_eos=True))
    seen: dict[int, list[list[int]]] = {0: [[], []], 1: [[]]}
    while e.has_unfinished():
        for o in e.step():
            for c in o.completions:
                seen[o.request_id][c.index] += c.new_token_ids
            if o.request_id == 1:
                assert o.outputs is None                               # n = 1: the old shape
            if o.finished:
                assert [s for s in seen[o.request_id]] == [c.token_ids for c in o.completions]
    assert [len(x) for x in seen[0] + seen[1]] == [4, 4, 4]


def test_abort_of_a_group_frees_every_choice(tiny_model):
    e = engine(tiny_model)
    rid = e.add_request(PROMPT, SamplingParams(max_tokens=20, ignore_eos=True, n=4))
    e.step()
    e.step()
    out = e.abort(rid)
    assert out.finished and [c.finish_reason for c in out.outputs] == ["abort"] * 4
    assert e.scheduler.block_manager.num_free_blocks == 64 and not e.has_unfinished()
    rid = e.add_request(PROMPT, SamplingParams(max_tokens=20, ignore_eos=True, n=2))
    assert e.abort(rid).outputs[1].finish_reason == "abort"              # aborted before the fork
    assert e.abort(rid) is None


def test_preempted_choices_recompute_and_keep_their_tokens(tiny_model):
    sp = SamplingParams(max_tokens=12, temperature=1.0, seed=5, ignore_eos=True)
    other = list(range(60, 72))
    small = engine(tiny_model, num_blocks=14, max_num_batched_tokens=16)   # 20 blocks wanted at the peak
    single, group = small.generate([other, PROMPT], [dataclasses.replace(sp, seed=99), dataclasses.replace(sp, n=3)])
    assert small.scheduler.num_preemptions > 0 and group.num_preemptions > 0      # choices were preempted
    big = engine(tiny_model).generate([other] + [PROMPT] * 3,
                                      [dataclasses.replace(sp, seed=s) for s in (99, 5, 6, 7)])
    assert [single.token_ids] + [c.token_ids for c in group.outputs] == [o.token_ids for o in big]
    assert small.scheduler.block_manager.num_free_blocks == 14


def test_group_admission_holds_seats_and_rejects_what_never_fits():
    sched = Scheduler(SchedulerConfig(num_blocks=8, block_size=4, max_num_seqs=3))
    with pytest.raises(UsageError, match="n=4 needs 4 sequences"):
        sched.add_group(make_group(0, [1, 2], SamplingParams(n=4), [-1, -2, -3]))
    with pytest.raises(UsageError, match="KV blocks"):
        sched.add_group(make_group(0, [1] * 8, SamplingParams(n=3, max_tokens=12), [-1, -2]))
    sched.add_group(make_group(0, [1, 2, 3], SamplingParams(n=2, max_tokens=4), [-1]))
    from ch05_scheduling.sequence import Sequence
    for i in (1, 2):
        sched.add(Sequence(i, [4, 5], SamplingParams(max_tokens=4)))
    out = sched.schedule(0.0)
    assert [s.seq_id for s in out.scheduled] == [0, 1]                 # seat 3 is held for the fork
    assert out.scheduled[0].fork_ids == [-1]
