"""The sampling fields and message shapes through the official ``openai`` client, against the real server:
chat logprobs/top_logprobs and completions logprobs (OpenAI's two shapes, streaming too), presence,
frequency and repetition penalties, min_p and top_k computed by the engine, content parts, the developer
role, and a clear 400 for image parts, n above 16 and out-of-range values."""

from __future__ import annotations

import openai
import pytest

from ch04_kvcache.sampling import SamplingParams

MSG = [{"role": "user", "content": "Say something"}]


@pytest.fixture(scope="module")
def engine_client(tiny_engine_server):
    return openai.OpenAI(base_url=tiny_engine_server.url + "/v1", api_key="none", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def hf_client(tiny_hf_server):
    return openai.OpenAI(base_url=tiny_hf_server.url + "/v1", api_key="sk-test-alpha-0001", max_retries=0,
                         timeout=60)


def _check_chat_logprobs(lp, n_tokens: int, k: int) -> None:
    assert lp is not None and lp.content is not None and len(lp.content) == n_tokens
    for e in lp.content:
        assert isinstance(e.token, str) and isinstance(e.logprob, float) and e.logprob <= 0
        assert e.bytes == list(e.token.encode("utf-8"))
        assert len(e.top_logprobs) == k
        vals = [t.logprob for t in e.top_logprobs]
        assert vals == sorted(vals, reverse=True)
        assert all(isinstance(t.token, str) and t.bytes == list(t.token.encode("utf-8")) for t in e.top_logprobs)


def test_chat_logprobs_and_top_logprobs(engine_client):
    r = engine_client.chat.completions.create(model="tiny", messages=MSG, max_tokens=6, temperature=0,
                                              logprobs=True, top_logprobs=3)
    _check_chat_logprobs(r.choices[0].logprobs, r.usage.completion_tokens, 3)
    for e in r.choices[0].logprobs.content:  # greedy, no penalties: the sampled token is the top one
        assert e.logprob == pytest.approx(e.top_logprobs[0].logprob, abs=1e-6)
        assert e.token == e.top_logprobs[0].token
    plain = engine_client.chat.completions.create(model="tiny", messages=MSG, max_tokens=6, temperature=0)
    assert plain.choices[0].logprobs is None
    assert plain.choices[0].message.content == r.choices[0].message.content


def test_chat_logprobs_stream_like_non_streaming(engine_client):
    kw = dict(model="tiny", messages=MSG, max_tokens=6, temperature=0, logprobs=True, top_logprobs=2)
    full = engine_client.chat.completions.create(**kw).choices[0].logprobs.content
    chunks = list(engine_client.chat.completions.create(stream=True, **kw))
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert [e.token for e in streamed] == [e.token for e in full]
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in full], abs=1e-5)


def test_completion_logprobs_legacy_shape(engine_client):
    r = engine_client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=6, temperature=0,
                                         logprobs=2)
    lp = r.choices[0].logprobs
    n = r.usage.completion_tokens
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == n
    assert all(isinstance(t, str) for t in lp.tokens) and all(v <= 0 for v in lp.token_logprobs)
    for tok, v, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert 2 <= len(top) <= 3 and top[tok] == pytest.approx(v)  # the k best plus the sampled token
    assert lp.text_offset[0] == 0
    assert all(b - a == len(t) for a, b, t in zip(lp.text_offset, lp.text_offset[1:], lp.tokens, strict=False))
    chunks = list(engine_client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=6,
                                                   temperature=0, logprobs=2, stream=True))
    offsets = [o for c in chunks if c.choices[0].logprobs for o in c.choices[0].logprobs.text_offset]
    assert offsets == lp.text_offset


def test_served_logprobs_are_the_models_log_softmax(engine_client, tiny_engine_server):
    """Greedy tokens' logprobs from the server = log_softmax of the server's own model over prompt + output."""
    import torch

    from ch05_scheduling.engine import LLMEngine

    backend = tiny_engine_server.state.backend
    tok, model = backend.tokenizer, backend.engine.model
    prompt = "1 2 3 4"
    ids = tok(prompt)["input_ids"]
    r = engine_client.completions.create(model="tiny", prompt=prompt, max_tokens=5, temperature=0, logprobs=3)
    out = LLMEngine(backend.engine.config, model=model, tokenizer=tok).generate(
        [ids], SamplingParams(max_tokens=5))[0].token_ids
    assert len(out) == len(r.choices[0].logprobs.token_logprobs)
    with torch.inference_mode():
        lp = model(torch.tensor([ids + out]))[0].float().log_softmax(-1)[len(ids) - 1:-1]
    assert r.choices[0].logprobs.token_logprobs == pytest.approx(lp.max(-1).values.tolist(), abs=1e-3)
    assert r.choices[0].logprobs.token_logprobs == pytest.approx(lp.gather(1, torch.tensor(out)[:, None])[:, 0]
                                                                 .tolist(), abs=1e-3)


def test_penalties_min_p_top_k_are_computed_by_the_engine(engine_client, tiny_engine_server):
    """The served text equals ch05's engine called directly with the same SamplingParams (the server's model)."""
    from ch05_scheduling.engine import LLMEngine

    backend = tiny_engine_server.state.backend
    tok = backend.tokenizer
    direct = LLMEngine(backend.engine.config, model=backend.engine.model, tokenizer=tok)
    prompt = "The quick brown fox"
    ids = tok(prompt)["input_ids"]
    cases = [
        (dict(presence_penalty=2.0, frequency_penalty=2.0), {},
         SamplingParams(max_tokens=10, presence_penalty=2.0, frequency_penalty=2.0)),
        (dict(), {"repetition_penalty": 2.0}, SamplingParams(max_tokens=10, repetition_penalty=2.0)),
        (dict(temperature=0.9, seed=7), {"min_p": 0.05, "top_k": 20},
         SamplingParams(max_tokens=10, temperature=0.9, seed=7, min_p=0.05, top_k=20)),
    ]
    plain = direct.generate([ids], SamplingParams(max_tokens=10))[0].token_ids
    changed = []
    for kw, extra, sp in cases:
        kw = {"temperature": 0, **kw}
        r = engine_client.completions.create(model="tiny", prompt=prompt, max_tokens=10, extra_body=extra, **kw)
        ref = direct.generate([ids], sp)[0]
        assert r.choices[0].text == ref.text, (kw, extra)
        if sp.greedy:
            changed.append(ref.token_ids != plain)
    assert any(changed)  # a penalty changed what greedy decoding picks: it is applied, not ignored


def test_stop_string_kept_with_include_stop_str_in_output(engine_client):
    kw = dict(model="tiny", prompt="Once upon a time", max_tokens=12, temperature=0)
    plain = engine_client.completions.create(**kw).choices[0].text
    stop = plain[3:5]
    assert len(stop) == 2, plain
    at = plain.find(stop)
    cut = engine_client.completions.create(stop=[stop], **kw).choices[0]
    kept = engine_client.completions.create(stop=[stop], extra_body={"include_stop_str_in_output": True}, **kw)
    assert cut.text == plain[:at] and cut.finish_reason == "stop"
    assert kept.choices[0].text == plain[:at + len(stop)]


def test_content_parts_and_developer_role(engine_client):
    def text(messages):
        r = engine_client.chat.completions.create(model="tiny", messages=messages, max_tokens=6, temperature=0)
        return r.choices[0].message.content

    parts = [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]
    assert text([{"role": "user", "content": parts}]) == text([{"role": "user", "content": "Hello\nthere"}])
    sys_msg = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    dev_msg = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert text(dev_msg) == text(sys_msg)


def test_clear_400s(engine_client):
    image = [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}]
    with pytest.raises(openai.BadRequestError) as e:
        engine_client.chat.completions.create(model="tiny", messages=image, max_tokens=2)
    assert "no vision encoder" in e.value.body["message"] and e.value.body["param"] == "messages.0.content"
    with pytest.raises(openai.BadRequestError) as e:
        engine_client.chat.completions.create(model="tiny", messages=MSG, max_tokens=2, n=17)
    assert e.value.body["param"] == "n" and "16" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        engine_client.completions.create(model="tiny", prompt="x", max_tokens=2, frequency_penalty=-2.5)
    assert e.value.body["param"] == "frequency_penalty"


def test_transformers_backend_does_logprobs_and_penalties(hf_client):
    r = hf_client.chat.completions.create(model="tiny", messages=MSG, max_tokens=5, temperature=0, logprobs=True,
                                          top_logprobs=2, presence_penalty=1.0, frequency_penalty=0.5,
                                          extra_body={"repetition_penalty": 1.3})
    _check_chat_logprobs(r.choices[0].logprobs, r.usage.completion_tokens, 2)
    c = hf_client.completions.create(model="tiny", prompt="Hello", max_tokens=4, temperature=0, logprobs=1,
                                     stream=True)
    toks = [t for ch in c if ch.choices and ch.choices[0].logprobs for t in ch.choices[0].logprobs.tokens]
    assert len(toks) >= 1
