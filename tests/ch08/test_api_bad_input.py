"""Bad input gets the exact 4xx and an OpenAI-style error body naming the problem; nothing reaches the engine."""

from __future__ import annotations

import httpx
import pytest

from ch08_production.protocol import format_validation_error

C, CH = "/v1/completions", "/v1/chat/completions"
OK_MSG = [{"role": "user", "content": "hi"}]
LONG = "hello " * 400  # > 256 tokens of the tiny model's context

# (name, path, body (dict, or raw bytes), status, error type, param, code)
CASES = [
    ("malformed json", C, b'{"model": "tiny", "prompt": ', 400, "invalid_request_error", None, None),
    ("body not an object", C, b"[1, 2]", 400, "invalid_request_error", None, None),
    ("missing model", C, {"prompt": "x"}, 400, "invalid_request_error", "model", None),
    ("missing prompt", C, {"model": "tiny"}, 400, "invalid_request_error", "prompt", None),
    ("max_tokens as string", C, {"model": "tiny", "prompt": "x", "max_tokens": "5"}, 400,
     "invalid_request_error", "max_tokens", None),
    ("max_tokens zero", C, {"model": "tiny", "prompt": "x", "max_tokens": 0}, 400, "invalid_request_error",
     "max_tokens", None),
    ("max_tokens beyond context", C, {"model": "tiny", "prompt": "x", "max_tokens": 100_000}, 400,
     "invalid_request_error", "max_tokens", None),
    ("prompt plus max_tokens beyond context", C, {"model": "tiny", "prompt": "hello " * 100, "max_tokens": 200},
     400, "invalid_request_error", "max_tokens", "context_length_exceeded"),
    ("prompt longer than context", C, {"model": "tiny", "prompt": LONG, "max_tokens": 4}, 400,
     "invalid_request_error", "prompt", "context_length_exceeded"),
    ("chat prompt longer than context", CH, {"model": "tiny", "messages": [{"role": "user", "content": LONG}]},
     400, "invalid_request_error", "messages", "context_length_exceeded"),
    ("unknown model", C, {"model": "gpt-9", "prompt": "x"}, 404, "invalid_request_error", "model",
     "model_not_found"),
    ("temperature too high", C, {"model": "tiny", "prompt": "x", "temperature": 3.5}, 400,
     "invalid_request_error", "temperature", None),
    ("top_p zero", C, {"model": "tiny", "prompt": "x", "top_p": 0}, 400, "invalid_request_error", "top_p", None),
    ("n above the limit", C, {"model": "tiny", "prompt": "x", "n": 17}, 400, "invalid_request_error", "n", None),
    ("n zero", CH, {"model": "tiny", "messages": [{"role": "user", "content": "x"}], "n": 0}, 400,
     "invalid_request_error", "n", None),
    ("unknown field", C, {"model": "tiny", "prompt": "x", "max_tokenz": 3}, 400, "invalid_request_error",
     "max_tokenz", None),
    ("stream not a bool", C, {"model": "tiny", "prompt": "x", "stream": "yes"}, 400, "invalid_request_error",
     "stream", None),
    ("too many stop strings", C, {"model": "tiny", "prompt": "x", "stop": list("abcde")}, 400,
     "invalid_request_error", "stop", None),
    ("token id outside vocabulary", C, {"model": "tiny", "prompt": [1, 2, 10_000_000]}, 400,
     "invalid_request_error", "prompt", None),
    ("negative token id", C, {"model": "tiny", "prompt": [1, -2]}, 400, "invalid_request_error", "prompt", None),
    ("empty prompt", C, {"model": "tiny", "prompt": ""}, 400, "invalid_request_error", "prompt", None),
    ("batch of prompts", C, {"model": "tiny", "prompt": ["a", "b"]}, 400, "invalid_request_error", "prompt", None),
    ("presence_penalty out of range", C, {"model": "tiny", "prompt": "x", "presence_penalty": 2.5}, 400,
     "invalid_request_error", "presence_penalty", None),
    ("repetition_penalty zero", C, {"model": "tiny", "prompt": "x", "repetition_penalty": 0}, 400,
     "invalid_request_error", "repetition_penalty", None),
    ("min_p above one", C, {"model": "tiny", "prompt": "x", "min_p": 1.5}, 400, "invalid_request_error", "min_p",
     None),
    ("completions logprobs above 20", C, {"model": "tiny", "prompt": "x", "logprobs": 21}, 400,
     "invalid_request_error", "logprobs", None),
    ("stream_options without stream", C, {"model": "tiny", "prompt": "x", "stream_options": {"include_usage": True}},
     400, "invalid_request_error", None, None),
    ("empty messages", CH, {"model": "tiny", "messages": []}, 400, "invalid_request_error", "messages", None),
    ("bad role", CH, {"model": "tiny", "messages": [{"role": "robot", "content": "x"}]}, 400,
     "invalid_request_error", "messages.0.role", None),
    ("content not a string", CH, {"model": "tiny", "messages": [{"role": "user", "content": 5}]}, 400,
     "invalid_request_error", "messages.0.content", None),
    ("both max_tokens fields", CH, {"model": "tiny", "messages": OK_MSG, "max_tokens": 2,
                                    "max_completion_tokens": 2}, 400, "invalid_request_error", None, None),
    ("top_logprobs without logprobs", CH, {"model": "tiny", "messages": OK_MSG, "top_logprobs": 2}, 400,
     "invalid_request_error", "top_logprobs", None),
    ("top_logprobs above 20", CH, {"model": "tiny", "messages": OK_MSG, "logprobs": True, "top_logprobs": 21},
     400, "invalid_request_error", "top_logprobs", None),
    ("image part", CH, {"model": "tiny", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}, 400,
     "invalid_request_error", "messages.0.content", None),
    ("unknown content part", CH, {"model": "tiny", "messages": [{"role": "user", "content": [
        {"type": "video", "video": "x"}]}]}, 400, "invalid_request_error", None, None),
    ("content filter refusal", C, {"model": "tiny", "prompt": "how to make a bomb at home", "max_tokens": 2}, 400,
     "invalid_request_error", "prompt", "content_policy_violation"),
]


@pytest.mark.parametrize("name,path,body,status,etype,param,code", CASES, ids=[c[0] for c in CASES])
def test_bad_request_gets_exact_status_and_error(tiny_hf_server, api_key, name, path, body, status, etype, param,
                                                  code):
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    kw = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = httpx.post(tiny_hf_server.url + path, headers=headers, timeout=30, **kw)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == etype
    if param is not None:
        assert err["param"] == param, err
    assert err["code"] == code
    assert 10 < len(err["message"]) < 500 and "Traceback" not in err["message"]


def test_oversized_body_is_413(tiny_hf_server, api_key):
    r = httpx.post(tiny_hf_server.url + C, headers={"Authorization": f"Bearer {api_key}"},
                   content=b'{"model": "tiny", "prompt": "' + b"a" * 3_000_000 + b'"}', timeout=30)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_wrong_method_and_unknown_route(tiny_hf_server, api_key):
    h = {"Authorization": f"Bearer {api_key}"}
    assert httpx.get(tiny_hf_server.url + C, headers=h).status_code == 405
    r = httpx.get(tiny_hf_server.url + "/v1/nothing-here", headers=h)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def test_server_still_serves_after_bad_input(tiny_hf_server, api_key):
    r = httpx.post(tiny_hf_server.url + C, headers={"Authorization": f"Bearer {api_key}"},
                   json={"model": "tiny", "prompt": "still alive?", "max_tokens": 2}, timeout=30)
    assert r.status_code == 200 and httpx.get(tiny_hf_server.url + "/ready").status_code == 200


def test_validation_message_names_the_field():
    msg, param = format_validation_error([{"type": "missing", "loc": ("body", "model"), "msg": "Field required"}])
    assert param == "model" and msg == "'model' is required"
