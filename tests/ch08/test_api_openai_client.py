"""The official ``openai`` client works against our server unchanged: completion, chat, streaming, errors."""

from __future__ import annotations

import openai
import pytest


@pytest.fixture
def client(tiny_hf_server, api_key):
    return openai.OpenAI(base_url=tiny_hf_server.url + "/v1", api_key=api_key, max_retries=0, timeout=60)


def test_models_lists_the_served_model(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == ["tiny"]


def test_completion_returns_text_and_usage(client):
    r = client.completions.create(model="tiny", prompt="Hello there", max_tokens=5, temperature=0)
    assert r.object == "text_completion"
    assert r.choices[0].finish_reason in ("length", "stop")
    assert r.usage.completion_tokens <= 5 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_greedy_completion_is_deterministic(client):
    a = client.completions.create(model="tiny", prompt="One two", max_tokens=6, temperature=0)
    b = client.completions.create(model="tiny", prompt="One two", max_tokens=6, temperature=0)
    assert a.choices[0].text == b.choices[0].text


def test_chat_completion(client):
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                       temperature=0)
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert isinstance(r.choices[0].message.content, str)
    assert r.usage.completion_tokens <= 4


def test_chat_streaming_matches_non_streaming(client):
    kw = dict(model="tiny", messages=[{"role": "user", "content": "Count"}], max_tokens=8, temperature=0)
    full = client.chat.completions.create(**kw).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [finishes[0]] and finishes[0] in ("length", "stop")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 8


def test_completion_streaming(client):
    stream = client.completions.create(model="tiny", prompt="Stream me", max_tokens=6, temperature=0, stream=True)
    chunks = list(stream)
    assert chunks and chunks[-1].choices[0].finish_reason in ("length", "stop")
    assert all(c.object == "text_completion" for c in chunks)


def test_errors_surface_as_typed_exceptions(client, tiny_hf_server):
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="nope", prompt="x", max_tokens=2)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="x", max_tokens=100_000)
    assert e.value.body["param"] == "max_tokens"
    bad = openai.OpenAI(base_url=tiny_hf_server.url + "/v1", api_key="sk-wrong-key-000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_system_fingerprint_names_the_deployment(client):
    """Every response and stream chunk carries one fingerprint (as vLLM's ``vllm-<version>-<hash8>``); it
    changes with what decides the answers, not with the port."""
    from ch05_scheduling.config import EngineConfig
    from ch08_production.config import ServerConfig

    kw = dict(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=3, temperature=0)
    fp = client.chat.completions.create(**kw).system_fingerprint
    assert fp.startswith("llmic-") and fp.split("-")[-2] == "transformers" and len(fp.split("-")[-1]) == 8
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert {c.system_fingerprint for c in chunks} == {fp}
    assert client.completions.create(model="tiny", prompt="Hi", max_tokens=2).system_fingerprint == fp
    base = ServerConfig(backend="engine")
    assert ServerConfig(backend="engine", port=9000).fingerprint() == base.fingerprint()
    assert ServerConfig(backend="engine", engine=EngineConfig(max_num_seqs=4)).fingerprint() != base.fingerprint()
    assert ServerConfig(backend="engine", quantization="int4").fingerprint() != base.fingerprint()
