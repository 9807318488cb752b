"""OpenAI wire format: request models that validate every field, response builders, error bodies (8.1).

Validation is strict on purpose (book 8.1.2, 8.9.1): a wrong type, an unknown field or a value out of
range is rejected here with a 400 and a sentence naming the field, so nothing malformed reaches the
engine. Limits that depend on the model (context length) are checked in the server after tokenizing;
the sampling fields are checked once more by ch04's ``SamplingParams`` (the one the engine runs on).

Sampling fields: OpenAI's ``temperature``, ``top_p``, ``seed``, ``stop``, ``presence_penalty``,
``frequency_penalty``, chat ``logprobs``/``top_logprobs`` and completions ``logprobs: k``; vLLM's
``top_k``, ``min_p``, ``repetition_penalty``, ``ignore_eos`` and ``include_stop_str_in_output``;
structured outputs: OpenAI's ``response_format`` and vLLM's ``structured_outputs``/``guided_*``
(``structured_request.py``). Chat
messages take ``content`` as a string or a list of ``{"type": "text", "text": ...}`` parts (joined with
newlines, as vLLM does); role ``developer`` is treated as ``system``. ``n`` (1..``MAX_N``) asks for several choices; streamed
chunks carry each choice's ``index`` and usage counts every choice's tokens (the prompt once). Logprobs are the raw model's
(before penalties and temperature), vLLM V1's default; they come back in OpenAI's two shapes, built by
:func:`chat_logprobs` and :func:`completion_logprobs`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ch04_kvcache.sampling_params import MAX_LOGPROBS, TokenLogprob
from ch08_production.structured_request import MAX_SPEC_CHARS, ResponseFormat, StructuredOutputsField
from ch08_production.tools import Tool, ToolCall, ToolChoice, plain_tool_call, plain_tool_result

MAX_N = 16  # choices per request (OpenAI documents no limit; vLLM none either); each one is a sequence
MAX_STOP = 4
MAX_STOP_LEN = 256
MAX_PROMPT_CHARS = 200_000

# ------------------------------------------------------------------------------------------- errors


class APIError(Exception):
    """An error the client should see: HTTP status + OpenAI error body + optional headers."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# ------------------------------------------------------------------------------------------- requests

Prob = Annotated[float, Field(ge=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StreamOptions(_Strict):
    include_usage: bool = False


class _Common(_Strict):
    model: str = Field(min_length=1, max_length=256)
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=-1, le=100_000)] | None = None  # vLLM extension; -1/0 = off
    min_p: Prob | None = None                                          # vLLM extension; 0 = off
    repetition_penalty: Annotated[float, Field(gt=0.0, le=2.0)] | None = None  # vLLM extension; 1 = off
    n: Annotated[int, Field(ge=1, le=MAX_N)] = 1  # choices; the engine prefills once and forks the KV blocks
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    presence_penalty: Penalty = 0.0
    frequency_penalty: Penalty = 0.0
    user: Annotated[str, Field(max_length=256)] | None = None
    ignore_eos: bool = False  # vLLM extension used by serving benchmarks: generate exactly max_tokens
    include_stop_str_in_output: bool = False  # vLLM extension
    # structured outputs (structured_request.py): OpenAI's response_format, vLLM's structured_outputs and guided_*
    response_format: ResponseFormat | None = None
    structured_outputs: StructuredOutputsField | None = None
    guided_json: dict[str, Any] | str | None = None
    guided_regex: Annotated[str, Field(max_length=MAX_SPEC_CHARS)] | None = None
    guided_choice: Annotated[list[str], Field(min_length=1, max_length=256)] | None = None
    guided_grammar: Annotated[str, Field(max_length=MAX_SPEC_CHARS)] | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> str | list[str] | None:
        items = [v] if isinstance(v, str) else (v or [])
        if len(items) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences are allowed")
        if any(not s or len(s) > MAX_STOP_LEN for s in items):
            raise ValueError(f"each stop sequence must have 1..{MAX_STOP_LEN} characters")
        return v

    @model_validator(mode="after")
    def _stream_options(self) -> _Common:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self

    def stop_list(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class CompletionRequest(_Common):
    """POST /v1/completions. ``prompt``: a string, a list of token ids, or a one-element list of either."""

    prompt: (Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
             | Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=MAX_PROMPT_CHARS)]
             | Annotated[list[Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]], Field(min_length=1,
                                                                                         max_length=1)])
    max_tokens: Annotated[int, Field(ge=1)] | None = 16
    echo: Literal[False] = False
    logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None  # top-k alternatives per token
    suffix: None = None
    best_of: Annotated[int, Field(ge=1, le=1)] | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, v: Any) -> Any:
        if isinstance(v, list):
            if len(v) > 1 and all(isinstance(x, str) for x in v):
                raise ValueError("send one prompt per request (a list of several prompts is not supported)")
            if any(isinstance(x, int) and not isinstance(x, bool) and x < 0 for x in v):
                raise ValueError("token ids must be >= 0")
            if v and not all(isinstance(x, int) and not isinstance(x, bool) for x in v) and not (
                    len(v) == 1 and isinstance(v[0], str)):
                raise ValueError("must be a string, a list of token ids, or a list holding one string")
        return v


class TextPart(_Strict):
    type: Literal["text"]
    text: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]


class ImageURL(_Strict):
    url: str
    detail: str | None = None


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: (Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
              | Annotated[list[ContentPart], Field(min_length=1, max_length=256)] | None) = None
    name: Annotated[str, Field(max_length=64)] | None = None
    tool_calls: Annotated[list[ToolCall], Field(min_length=1, max_length=32)] | None = None  # assistant only
    tool_call_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None          # tool only

    @field_validator("content")
    @classmethod
    def _text_only(cls, v: str | list[TextPart | ImagePart] | None) -> str | list[TextPart | ImagePart] | None:
        if isinstance(v, list) and any(isinstance(p, ImagePart) for p in v):
            raise ValueError("this model has no vision encoder: send text only (a string, or parts of "
                             "type 'text')")
        return v

    @model_validator(mode="after")
    def _shape_of_the_role(self) -> ChatMessage:
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if (self.tool_call_id is None) == (self.role == "tool"):
            raise ValueError("a tool message needs tool_call_id (the id of the call it answers); other roles "
                             "send none" if self.role == "tool" else f"a {self.role} message has no tool_call_id")
        if self.content is None and self.tool_calls is None:
            raise ValueError(f"a {self.role} message needs content" + (" or tool_calls" if self.role == "assistant"
                                                                       else ""))
        return self

    def text(self) -> str:
        """The content as one string: text parts joined with newlines (vLLM's 'string' content format)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if isinstance(p, TextPart))

    def template_role(self) -> str:
        """The role the chat template sees: OpenAI's 'developer' is the system prompt of older models."""
        return "system" if self.role == "developer" else self.role

    def template_message(self, native_tools: bool) -> dict[str, Any]:
        """This message as the chat template takes it. Tool calls and results go as structured fields to a
        template that knows them, else in ``tools.py``'s plain form (role and content only)."""
        if native_tools:
            msg: dict[str, Any] = {"role": self.template_role(), "content": self.text()}
            if self.tool_calls:
                msg["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.function.name, "arguments": c.arguments()}}
                                     for c in self.tool_calls]
            if self.tool_call_id is not None:
                msg["tool_call_id"] = self.tool_call_id
            return msg
        if self.role == "tool":
            return {"role": "user", "content": plain_tool_result(self.text())}
        parts = ([self.text()] if self.text() else []) + [plain_tool_call(c) for c in self.tool_calls or ()]
        return {"role": self.template_role(), "content": "\n".join(parts)}


class ChatCompletionRequest(_Common):
    """POST /v1/chat/completions. Text messages (strings or text parts), no images; ``tools`` with
    ``tool_choice`` "required" or a named function (``tools.py``)."""

    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=256)]
    tools: Annotated[list[Tool], Field(min_length=1, max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _top_needs_logprobs(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is not None and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs set to true")
        return v

    @model_validator(mode="after")
    def _one_max(self) -> ChatCompletionRequest:
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("send max_tokens or max_completion_tokens, not both")
        return self

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @field_validator("messages")
    @classmethod
    def _tool_results_answer_calls(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        called: set[str] = set()
        for i, m in enumerate(messages):
            called.update(c.id for c in m.tool_calls or ())
            if m.role == "tool" and m.tool_call_id not in called:
                raise ValueError(f"messages[{i}] answers tool_call_id {m.tool_call_id!r}, which no earlier "
                                 "assistant message's tool_calls made")
        return messages

    def template_messages(self, native_tools: bool = False) -> list[dict[str, Any]]:
        """The messages as the chat template takes them (see :meth:`ChatMessage.template_message`)."""
        return [m.template_message(native_tools) for m in self.messages]

    def num_logprobs(self) -> int | None:
        """SamplingParams.logprobs: None unless logprobs is true; then top_logprobs alternatives (default 0)."""
        return (self.top_logprobs or 0) if self.logprobs else None


def format_validation_error(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    """One actionable sentence and the offending parameter, from pydantic's error list."""
    if not errors:
        return "the request body is invalid", None
    # unions report one error per branch: prefer the most specific (deepest) location
    err = max(errors, key=lambda e: len([p for p in e.get("loc", ()) if p != "body"]))
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    loc = [p for p in loc if not p.startswith(("function-", "constrained-", "list[", "str", "int"))] or loc
    param = ".".join(loc) if loc else None
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    kind = err.get("type", "")
    if kind == "missing":
        return f"'{param}' is required", param
    if kind == "extra_forbidden":
        return f"unknown field '{param}'; check the spelling or remove it", param
    if kind == "json_invalid":
        return f"the request body is not valid JSON ({err.get('ctx', {}).get('error', msg)})", None
    if "input" in err and kind not in ("value_error",) and not isinstance(err["input"], (dict, list)):
        return f"invalid '{param}': {msg} (got {err['input']!r})"[:500], param
    return f"invalid '{param}': {msg}"[:500] if param else msg, param


# ------------------------------------------------------------------------------------------- responses


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


TokenText = Callable[[int], str]  # token id -> its text (the server decodes one token at a time)


def _top_entry(tid: int, lp: float, token_text: TokenText) -> dict[str, Any]:
    tok = token_text(tid)
    return {"token": tok, "logprob": lp, "bytes": list(tok.encode("utf-8"))}


def chat_logprobs(entries: Sequence[TokenLogprob], token_text: TokenText) -> dict[str, Any]:
    """OpenAI chat shape: ``{"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}``
    (``top_logprobs`` holds exactly the k most likely tokens, as OpenAI and vLLM)."""
    return {"content": [{**_top_entry(e.token_id, e.logprob, token_text),
                         "top_logprobs": [_top_entry(t, lp, token_text) for t, lp in e.top]} for e in entries]}


def completion_logprobs(entries: Sequence[TokenLogprob], token_text: TokenText, offset: int = 0,
                        ) -> dict[str, Any]:
    """The legacy completions shape: parallel lists ``tokens``, ``token_logprobs``, ``top_logprobs``
    (a ``{token: logprob}`` dict per position: the k most likely plus the sampled one, so up to k+1, as
    OpenAI documents) and ``text_offset`` (each token's character offset in the output text, counted
    from ``offset``: a stream passes where the previous chunk ended)."""
    tokens, lps, tops, offsets = [], [], [], []
    for e in entries:
        tok = token_text(e.token_id)
        top = {token_text(t): lp for t, lp in e.top}
        top.setdefault(tok, e.logprob)
        tokens.append(tok)
        lps.append(e.logprob)
        tops.append(top)
        offsets.append(offset)
        offset += len(tok)
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}


@dataclass(frozen=True, slots=True)
class Choice:
    """One finished choice of a non-streaming answer (``n`` of them when the request asked for n)."""

    index: int
    text: str
    finish_reason: str | None
    logprobs: dict[str, Any] | None = None


def completion_body(rid: str, model: str, text: str, finish: str | None, p_tok: int, c_tok: int,
                    created: int | None = None, logprobs: dict[str, Any] | None = None,
                    choices: Sequence[Choice] | None = None, fingerprint: str | None = None) -> dict[str, Any]:
    """A text completion; ``choices`` (n > 1) replaces the single ``text``/``finish``/``logprobs`` choice.
    ``c_tok`` counts every choice's tokens, ``p_tok`` the prompt once (as OpenAI bills it)."""
    choices = choices or [Choice(0, text, finish, logprobs)]
    return {"id": rid, "object": "text_completion", "created": created or int(time.time()), "model": model,
            "system_fingerprint": fingerprint, "choices": [{"index": c.index, "text": c.text, "logprobs": c.logprobs, "finish_reason": c.finish_reason}
                        for c in choices],
            "usage": usage(p_tok, c_tok)}


def completion_chunk(rid: str, model: str, text: str, finish: str | None, created: int,
                     logprobs: dict[str, Any] | None = None, index: int = 0, fingerprint: str | None = None
                     ) -> dict[str, Any]:
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "system_fingerprint": fingerprint, "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}]}


def chat_body(rid: str, model: str, text: str, finish: str | None, p_tok: int, c_tok: int,
              created: int | None = None, logprobs: dict[str, Any] | None = None,
              choices: Sequence[Choice] | None = None, fingerprint: str | None = None) -> dict[str, Any]:
    """A chat completion; ``choices`` as in :func:`completion_body`."""
    choices = choices or [Choice(0, text, finish, logprobs)]
    return {"id": rid, "object": "chat.completion", "created": created or int(time.time()), "model": model,
            "system_fingerprint": fingerprint, "choices": [{"index": c.index, "message": {"role": "assistant", "content": c.text},
                         "logprobs": c.logprobs, "finish_reason": c.finish_reason} for c in choices],
            "usage": usage(p_tok, c_tok)}


def chat_chunk(rid: str, model: str, delta: dict[str, str], finish: str | None, created: int,
               logprobs: dict[str, Any] | None = None, index: int = 0, fingerprint: str | None = None
               ) -> dict[str, Any]:
    return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": fingerprint, "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}


def usage_chunk(rid: str, model: str, obj: str, created: int, p_tok: int, c_tok: int,
                fingerprint: str | None = None) -> dict[str, Any]:
    return {"id": rid, "object": obj, "created": created, "model": model, "system_fingerprint": fingerprint,
            "choices": [], "usage": usage(p_tok, c_tok)}


def models_body(model: str, max_model_len: int, created: int) -> dict[str, Any]:
    return {"object": "list", "data": [{"id": model, "object": "model", "created": created,
                                        "owned_by": "llm-inference-companion", "max_model_len": max_model_len}]}


def openai_finish(reason: str | None) -> str | None:
    """Our finish reasons as OpenAI names them ('abort' never reaches a client that is still there)."""
    return {"abort": "stop"}.get(reason or "", reason)
