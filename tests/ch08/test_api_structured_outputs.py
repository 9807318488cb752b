"""Structured outputs through the server with the official ``openai`` client: OpenAI's ``response_format``
and vLLM's ``structured_outputs`` / ``guided_*`` fields reach ch05's engine (tiny random model: only the
grammar makes its output valid), a bad schema or regex is a 400 naming the field, the transformers backend
answers 400 with its reason, and the vLLM proxy forwards the constraint as vLLM's ``structured_outputs``."""

from __future__ import annotations

import json
import re

import jsonschema
import openai
import pytest

from ch04_kvcache.sampling import SamplingParams
from ch04_kvcache.structured_output import StructuredOutput
from ch08_production.backends.base import GenerationRequest
from ch08_production.backends.vllm_proxy import VLLMProxyBackend

MSG = [{"role": "user", "content": "Report the status as JSON."}]
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}, "level": {"enum": ["low", "mid", "high"]},
                                           "code": {"type": "integer", "minimum": 0, "maximum": 9}},
          "required": ["ok", "level", "code"], "additionalProperties": False}


@pytest.fixture(scope="module")
def client(tiny_engine_server):
    return openai.OpenAI(base_url=tiny_engine_server.url + "/v1", api_key="none", max_retries=0, timeout=60)


def test_response_format_json_schema_and_json_object(client):
    rf = {"type": "json_schema", "json_schema": {"name": "status", "schema": SCHEMA, "strict": True}}
    r = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=40, temperature=0.8, seed=1,
                                       response_format=rf)
    assert r.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)
    chunks = list(client.chat.completions.create(model="tiny", messages=MSG, max_tokens=40, temperature=0.8,
                                                 seed=1, response_format=rf, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content
    obj = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=12, temperature=0,
                                         response_format={"type": "json_object"})
    assert obj.choices[0].message.content.startswith("{")


@pytest.mark.parametrize(("extra", "check"), [
    ({"guided_regex": r"[0-9]{3}-[a-z]{2}"}, lambda t: re.fullmatch(r"[0-9]{3}-[a-z]{2}", t)),
    ({"guided_choice": ["red", "green", "blue"]}, lambda t: t in ("red", "green", "blue")),
    ({"guided_json": SCHEMA}, lambda t: jsonschema.validate(json.loads(t), SCHEMA) is None),
    ({"structured_outputs": {"choice": ["up", "down"]}}, lambda t: t in ("up", "down")),
])
def test_vllm_fields_on_completions(client, extra, check):
    r = client.completions.create(model="tiny", prompt="The answer is", max_tokens=40, temperature=0,
                                  extra_body=extra)
    assert r.choices[0].finish_reason == "stop" and check(r.choices[0].text), r.choices[0].text


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strnig"}}}},
     "response_format.json_schema.schema", "not a valid JSON Schema"),
    ({"guided_regex": "[a-"}, "guided_regex", "Unclosed"),
    ({"guided_choice": ["a"], "guided_regex": "a"}, "guided_choice", "one structured-output constraint"),
    ({"structured_outputs": {"regex": "a", "choice": ["a"]}}, "structured_outputs", "exactly one"),
])
def test_a_bad_constraint_is_a_400_naming_the_field(client, body, param, words):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tiny", messages=MSG, max_tokens=4, extra_body=body)
    e = err.value.body
    assert e["param"] == param and words in e["message"], e


def test_transformers_backend_refuses_with_a_reason(tiny_hf_server):
    c = openai.OpenAI(base_url=tiny_hf_server.url + "/v1", api_key="sk-test-alpha-0001", max_retries=0, timeout=30)
    with pytest.raises(openai.BadRequestError, match="not supported by the 'transformers' backend") as err:
        c.chat.completions.create(model="tiny", messages=MSG, max_tokens=4, response_format={"type": "json_object"})
    assert err.value.body["param"] == "response_format"


def test_vllm_proxy_forwards_the_constraint_as_structured_outputs():
    proxy = VLLMProxyBackend("http://127.0.0.1:1", "m", remote_model="m")
    so = StructuredOutput.json_schema(SCHEMA)
    body = proxy._body(GenerationRequest("r", (1, 2), SamplingParams(max_tokens=4, structured_outputs=so)))
    assert body["structured_outputs"] == {"json": SCHEMA, "disable_any_whitespace": True}
    body = proxy._body(GenerationRequest("r", (1, 2), SamplingParams(structured_outputs=StructuredOutput.choice(["a"]))))
    assert body["structured_outputs"] == {"choice": ["a"]}
    assert "structured_outputs" not in proxy._body(GenerationRequest("r", (1, 2), SamplingParams()))


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}, "days": {"type": "integer", "minimum": 1,
                                                                                   "maximum": 7}},
    "required": ["city", "days"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"tz": {"enum": ["UTC", "CET"]}}, "required": ["tz"], "additionalProperties": False}}}


def test_tool_calls_for_a_named_function_and_required(client):
    named = {"type": "function", "function": {"name": "get_weather"}}
    r = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=40, temperature=0,
                                       tools=[WEATHER, TIME], tool_choice=named)
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls" and ch.message.content is None
    [call] = ch.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
    r = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=48, temperature=0,
                                       tools=[WEATHER, TIME], tool_choice="required")
    [call] = r.choices[0].message.tool_calls
    tool = {"get_weather": WEATHER, "get_time": TIME}[call.function.name]
    jsonschema.validate(json.loads(call.function.arguments), tool["function"]["parameters"])


@pytest.mark.parametrize(("kw", "param", "words"), [
    ({"tools": [WEATHER]}, "tool_choice", "'auto'"),
    ({"tools": [WEATHER], "tool_choice": "auto"}, "tool_choice", "'required'"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice",
     "no tool named"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 3}}}],
      "tool_choice": "required"}, "tools", "not a valid JSON Schema"),
])
def test_unservable_tool_requests_are_400s_naming_the_field(client, kw, param, words):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tiny", messages=MSG, max_tokens=4, **kw)
    assert err.value.body["param"] == param and words in err.value.body["message"], err.value.body


def test_a_tool_round_trip_sends_the_call_and_its_result_back(client, embedded_tokenizer):
    """The agent loop: call a tool, send the assistant's call and a ``tool`` result back, get an answer. The
    SmolLM2 template knows no tools, so both reach the model in the plain form (tools.py)."""
    from ch08_production import protocol as P
    from ch08_production.tools import template_knows_tools

    named = {"type": "function", "function": {"name": "get_weather"}}
    first = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=40, temperature=0,
                                           tools=[WEATHER], tool_choice=named)
    assistant = first.choices[0].message.model_dump(exclude_none=True)
    [call] = assistant["tool_calls"]
    result = {"role": "tool", "tool_call_id": call["id"], "content": '{"temp_c": 18, "sky": "clear"}'}
    history = [*MSG, assistant, result]
    second = client.chat.completions.create(model="tiny", messages=history, max_tokens=6, temperature=0,
                                            tools=[WEATHER], tool_choice="none")
    assert second.choices[0].message.content is not None and second.choices[0].finish_reason in ("stop", "length")
    assert not template_knows_tools(embedded_tokenizer)
    rendered = P.ChatCompletionRequest.model_validate({"model": "tiny", "messages": history}).template_messages()
    assert [m["role"] for m in rendered] == ["user", "assistant", "user"]
    assert rendered[1]["content"] == ("<tool_call>\n" + json.dumps({"name": "get_weather", "arguments": json.loads(
        call["function"]["arguments"])}) + "\n</tool_call>")
    assert rendered[2]["content"] == '<tool_response>\n{"temp_c": 18, "sky": "clear"}\n</tool_response>'
    # the prompt of the second turn holds all three messages: more tokens than the first turn's
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + 20


@pytest.mark.parametrize(("messages", "words"), [
    ([*MSG, {"role": "tool", "tool_call_id": "call_x", "content": "1"}], "no earlier assistant"),
    ([{"role": "user", "content": "x", "tool_calls": [{"id": "c", "type": "function",
                                                       "function": {"name": "f", "arguments": "{}"}}]}],
     "only assistant messages carry tool_calls"),
    ([{"role": "tool", "content": "x"}], "needs tool_call_id"),
    ([{"role": "assistant"}], "needs content or tool_calls"),
])
def test_malformed_tool_messages_are_400s(client, messages, words):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tiny", messages=messages, max_tokens=4)
    assert words in err.value.body["message"] and err.value.body["param"].startswith("messages"), err.value.body
