"""``n > 1`` through the official ``openai`` client: n choices, streamed with ``choices[].index``, usage
counting every choice (the prompt once); choice i = the request with seed + i on the engine (one prefill,
forked blocks) and on the transformers backend (choices one after another); per-choice stop strings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import openai
import pytest

from ch04_kvcache.sampling import SamplingParams
from ch08_production.backends.base import GenerationRequest, StreamChunk
from ch08_production.pipeline import RequestRecord, run_generation

MSG = [{"role": "user", "content": "Tell me a story"}]
FREE = {"ignore_eos": True}


@pytest.fixture(scope="module")
def engine_client(tiny_engine_server):
    return openai.OpenAI(base_url=tiny_engine_server.url + "/v1", api_key="none", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def hf_client(tiny_hf_server):
    return openai.OpenAI(base_url=tiny_hf_server.url + "/v1", api_key="sk-test-alpha-0001", max_retries=0,
                         timeout=60)


@pytest.mark.parametrize("backend", ["engine", "transformers"])
def test_n_choices_equal_single_requests_with_seed_plus_i(backend, engine_client, hf_client):
    client = engine_client if backend == "engine" else hf_client
    kw = dict(model="tiny", messages=MSG, max_tokens=5, temperature=1.0, extra_body=FREE)
    r = client.chat.completions.create(n=3, seed=21, **kw)
    assert [c.index for c in r.choices] == [0, 1, 2]
    singles = [client.chat.completions.create(seed=21 + i, **kw) for i in range(3)]
    assert [c.message.content for c in r.choices] == [s.choices[0].message.content for s in singles]
    assert r.usage.completion_tokens == 15 and r.usage.prompt_tokens == singles[0].usage.prompt_tokens
    assert all(c.finish_reason == "length" for c in r.choices)


def test_streamed_choices_carry_their_index_and_usage_counts_all(engine_client):
    kw = dict(model="tiny", prompt="Once upon a time", max_tokens=4, temperature=0.8, seed=3, n=2,
              extra_body=FREE)
    full = engine_client.completions.create(**kw)
    texts, finishes, usage = ["", ""], [None, None], None
    for ch in engine_client.completions.create(stream=True, stream_options={"include_usage": True}, **kw):
        for c in ch.choices:
            texts[c.index] += c.text
            finishes[c.index] = c.finish_reason or finishes[c.index]
        usage = ch.usage or usage
    assert texts == [c.text for c in full.choices] and finishes == ["length", "length"]
    assert usage.completion_tokens == 8 == full.usage.completion_tokens
    roles = [c.index for ch in engine_client.chat.completions.create(model="tiny", messages=MSG, max_tokens=2,
                                                                      n=2, stream=True)
             for c in ch.choices if c.delta.role == "assistant"]
    assert roles == [0, 1]                                              # the role once per choice


def test_a_stop_string_ends_only_its_own_choice():
    class TwoChoices:
        async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
            for step, (a, b) in enumerate([("go", "ab"), ("on", "STOP"), ("!", "never"), ("", "")]):
                last = step == 3
                yield StreamChunk((1,), a, "length" if last else None, None, 0)
                yield StreamChunk((1,), b, "length" if last else None, None, 1)

    async def run() -> tuple[list, RequestRecord]:
        req = GenerationRequest("r", (1, 2), SamplingParams(max_tokens=4, stop=("STOP",), n=2))
        record = RequestRecord("r", 2)
        return [e async for e in run_generation(TwoChoices(), req, record, timeout_s=10)], record

    events, record = asyncio.run(run())
    text = ["".join(e.text for e in events if e.index == i) for i in (0, 1)]
    assert text == ["goon!", "ab"]
    assert [(e.index, e.finish_reason) for e in events if e.finish_reason] == [(1, "stop"), (0, "length")]
    assert record.finish_reason == "length" and record.completion_tokens == 6   # choice 1's tail dropped


def test_bad_n_is_one_400_naming_n(engine_client):
    for n, why in [(0, "greater than or equal to 1"), (17, "16"), (9, "at most 8 choices")]:  # engine: 8 seats
        with pytest.raises(openai.BadRequestError) as e:
            engine_client.completions.create(model="tiny", prompt="x", max_tokens=2, n=n)
        assert e.value.body["param"] == "n" and why in e.value.body["message"], e.value.body
