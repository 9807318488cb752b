"""The real engine on ch04's model: batched greedy output = the request run alone; abort; preemption."""

from __future__ import annotations

import pytest

from ch04_kvcache.generate import generate
from ch04_kvcache.model import LlamaModel
from ch05_scheduling.engine import EngineConfig, LLMEngine
from ch05_scheduling.sequence import SamplingParams

PROMPTS = [[5, 9, 17, 3, 44, 81, 12], [7] * 3, list(range(20, 61)), [100, 3, 99, 4, 98, 5, 97, 6, 96, 7, 95],
           [33, 34]]
LENS = [9, 14, 5, 11, 7]


@pytest.fixture
def tiny_model(tiny_hf_model) -> LlamaModel:
    _, folder = tiny_hf_model
    return LlamaModel.from_pretrained(folder)


def alone(model: LlamaModel, prompt, n, **kw) -> list[int]:
    return generate(model, prompt, n, cache="contiguous", eos_token_id=None, **kw).token_ids


def run_engine(model, prompts=PROMPTS, lens=LENS, **cfg):
    engine = LLMEngine(EngineConfig(**{"block_size": 4, "num_blocks": 64, "max_num_batched_tokens": 16, **cfg}),
                       model=model)
    outs = engine.generate(prompts, [SamplingParams(max_tokens=n, ignore_eos=True) for n in lens])
    return engine, outs


def test_greedy_mixed_batch_equals_each_request_run_alone(tiny_model):
    engine, outs = run_engine(tiny_model)
    for p, n, o in zip(PROMPTS, LENS, outs, strict=True):
        assert o.token_ids == alone(tiny_model, p, n)
        assert o.finished and o.finish_reason == "length"
    # the step log shows real mixing: prefill chunks and decode tokens in the same step
    assert any(r.features.num_prefill_tokens and r.features.num_tokens > r.features.num_prefill_tokens
               for r in engine.step_log)
    assert engine.scheduler.block_manager.num_free_blocks == 64


def test_preemption_under_a_tiny_block_budget_keeps_outputs(tiny_model):
    engine, outs = run_engine(tiny_model, num_blocks=20, max_num_batched_tokens=64)
    assert engine.scheduler.num_preemptions > 0
    assert sum(o.num_preemptions for o in outs) == engine.scheduler.num_preemptions
    for p, n, o in zip(PROMPTS, LENS, outs, strict=True):
        assert o.token_ids == alone(tiny_model, p, n)


def test_prefix_caching_reuses_blocks_and_keeps_outputs(tiny_model):
    system = list(range(40, 72))
    prompts = [system + [5, 6], system + [7], system + [8, 9, 10]]
    engine, outs = run_engine(tiny_model, prompts, [6, 6, 6], enable_prefix_caching=True, max_num_seqs=1)
    assert [o.num_cached_tokens for o in outs][1:] == [32, 32]
    for p, o in zip(prompts, outs, strict=True):
        assert o.token_ids == alone(tiny_model, p, 6)


def test_seeded_sampling_matches_generate_with_the_same_seed(tiny_model):
    params = [SamplingParams(max_tokens=8, temperature=0.8, top_k=20, top_p=0.9, seed=s, ignore_eos=True)
              for s in (1, 2, 3)]
    engine = LLMEngine(EngineConfig(block_size=4, num_blocks=64), model=tiny_model)
    outs = engine.generate(PROMPTS[:3], params)
    for p, sp, o in zip(PROMPTS[:3], params, outs, strict=True):
        assert o.token_ids == alone(tiny_model, p, 8, temperature=0.8, top_k=20, top_p=0.9, seed=sp.seed)


def test_per_request_penalties_and_logprobs_under_batching_match_generate(tiny_model):
    """Each request keeps its own SamplingParams in the batch: penalties over its own prompt and output,
    its own seed, its own number of logprobs; each equals ch04's generate run alone with the same params."""
    params = [SamplingParams(max_tokens=8, repetition_penalty=1.8, presence_penalty=1.0, logprobs=2, ignore_eos=True),
              SamplingParams(max_tokens=8, temperature=0.9, seed=5, frequency_penalty=1.5, presence_penalty=0.5,
                             logprobs=0, ignore_eos=True),
              SamplingParams(max_tokens=8, ignore_eos=True),
              SamplingParams(max_tokens=8, temperature=0.7, min_p=0.1, top_k=30, seed=9, ignore_eos=True)]
    engine = LLMEngine(EngineConfig(block_size=4, num_blocks=64, max_num_batched_tokens=16), model=tiny_model)
    outs = engine.generate(PROMPTS[:4], params)
    for p, sp, o in zip(PROMPTS[:4], params, outs, strict=True):
        ref = generate(tiny_model, p, 8, cache="contiguous", eos_token_id=None, params=sp)
        assert o.token_ids == ref.token_ids
        if sp.logprobs is None:
            assert o.logprobs is None
            continue
        assert [lp.token_id for lp in o.logprobs] == o.token_ids
        for a, b in zip(o.logprobs, ref.logprobs, strict=True):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-3) and len(a.top) == sp.logprobs
    # the penalties are real: the same prompt greedy without them gives other tokens
    assert outs[0].token_ids != alone(tiny_model, PROMPTS[0], 8)


def test_abort_frees_the_blocks_of_a_running_request(tiny_model):
    engine = LLMEngine(EngineConfig(block_size=4, num_blocks=64), model=tiny_model)
    rid = engine.add_request(PROMPTS[2], SamplingParams(max_tokens=50, ignore_eos=True))
    other = engine.add_request(PROMPTS[0], SamplingParams(max_tokens=3, ignore_eos=True))
    engine.step()
    engine.step()
    assert engine.scheduler.block_manager.num_used_blocks > 0
    out = engine.abort(rid)
    assert out is not None and out.finished and out.finish_reason == "abort"
    while engine.has_unfinished():
        engine.step()
    assert engine.scheduler.block_manager.num_used_blocks == 0
    assert engine.abort(other) is None


@pytest.mark.slow
def test_embedded_model_batch_matches_single_and_stops_on_strings(embedded_model_dir, embedded_tokenizer):
    from common.chat import FRANCE_ANSWER, FRANCE_PROMPT, chat_ids

    model = LlamaModel.from_pretrained(embedded_model_dir)
    engine = LLMEngine(EngineConfig(max_num_batched_tokens=64), model=model, tokenizer=embedded_tokenizer)
    prompts = [chat_ids(embedded_tokenizer, q) for q in (FRANCE_PROMPT, "Name three primary colors.", "Hi!")]
    outs = engine.generate(prompts, SamplingParams(max_tokens=12))
    assert outs[0].text == FRANCE_ANSWER
    for p, o in zip(prompts, outs, strict=True):
        ref = generate(model, p, 12, cache="contiguous").token_ids
        assert o.token_ids == ref
    stopped = engine.generate([prompts[0]], SamplingParams(max_tokens=12, stop=("France",)))[0]
    assert stopped.text == "The capital of " and stopped.finish_reason == "stop"
    kept = engine.generate([prompts[0]], SamplingParams(max_tokens=12, stop=("France",),
                                                        include_stop_str_in_output=True))[0]
    assert kept.text == "The capital of France"


def test_async_stream_yields_tokens_and_a_client_leaving_aborts(tiny_model):
    import asyncio

    from ch05_scheduling.async_engine import AsyncLLMEngine

    engine = AsyncLLMEngine(LLMEngine(EngineConfig(block_size=4, num_blocks=64), model=tiny_model))

    async def full():
        outs = [o async for o in engine.stream(PROMPTS[0], SamplingParams(max_tokens=6, ignore_eos=True))]
        return outs

    async def leaves():
        n = 0
        async for _ in engine.stream(PROMPTS[2], SamplingParams(max_tokens=200, ignore_eos=True)):
            n += 1
            if n == 2:
                break
        return n

    async def main():
        return await asyncio.gather(full(), leaves())

    try:
        outs, n = asyncio.run(main())
        assert n == 2
        assert [len(o.new_token_ids) for o in outs] == [1] * 6 and outs[-1].finished
        assert outs[-1].token_ids == alone(tiny_model, PROMPTS[0], 6)
        for _ in range(200):  # the abort lands at the next step boundary
            if not engine.engine.has_unfinished():
                break
            import time

            time.sleep(0.01)
        assert engine.engine.scheduler.block_manager.num_used_blocks == 0
    finally:
        engine.shutdown()


def test_closing_a_stream_returns_only_after_its_blocks_are_free_and_shutdown_ends_open_streams(tiny_model):
    import asyncio

    from ch05_scheduling.async_engine import AsyncLLMEngine, EngineStopped

    engine = AsyncLLMEngine(LLMEngine(EngineConfig(block_size=4, num_blocks=64), model=tiny_model))
    blocks = engine.engine.scheduler.block_manager

    async def leave_after(n: int) -> int:
        stream = engine.stream(PROMPTS[2], SamplingParams(max_tokens=200, ignore_eos=True))
        async for _ in stream:
            n -= 1
            if n == 0:
                break
        await stream.aclose()  # what a server does when the client goes away
        return blocks.num_used_blocks  # read at once: no sleeping, no polling

    async def stopped_midway() -> type:
        try:
            async for _ in engine.stream(PROMPTS[0], SamplingParams(max_tokens=200, ignore_eos=True)):
                if engine.healthy:
                    await asyncio.to_thread(engine.shutdown)
        except EngineStopped as exc:
            return type(exc)
        return type(None)

    try:
        assert asyncio.run(leave_after(3)) == 0
        assert engine.healthy and engine.error is None
        assert asyncio.run(stopped_midway()) is EngineStopped
        assert not engine.healthy
    finally:
        engine.shutdown()


def test_calibration_fits_a_model_and_validation_compares_like_with_like(tiny_model, tmp_path):
    from ch05_scheduling.calibrate import calibrate, validate, validation_trace

    engine = LLMEngine(EngineConfig(block_size=16, num_blocks=512), model=tiny_model)
    cost = calibrate(engine, smoke=True)
    assert cost.meta["fit_steps"] > 5 and all(c >= 0 for c in cost.coef)
    trace = validation_trace(engine, 4, 6, rate=50.0)
    v = validate(engine, cost, trace)
    assert v.real["output_tokens"] == v.sim["output_tokens"] == sum(r.output_len for r in trace)
    assert v.throughput_error_pct >= 0 and v.ttft_error_pct >= 0
    # a saved calibration is reused only on the setup it was measured on
    from ch05_scheduling.calibrate import saved_calibration

    path = tmp_path / "cost_model.json"
    assert saved_calibration(engine, path) is None
    cost.save(path)
    assert saved_calibration(engine, path).coef == cost.coef
    engine.prepacked_linears = 7  # e.g. the same model prepacked: other step times
    assert saved_calibration(engine, path) is None
