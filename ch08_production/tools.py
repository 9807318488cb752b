"""Function calling by grammar: ``tools`` with ``tool_choice`` "required" or a named function (8.1).

The server does not hope the model writes a well-formed call: it constrains it. A named function
(``tool_choice: {"type": "function", "function": {"name": "f"}}``) decodes the call's ``arguments``
under that function's ``parameters`` JSON Schema; ``"required"`` decodes one object
``{"name": <one of the tools>, "arguments": {...}}`` under a schema that ties each name to its own
parameters (``anyOf``). Either way the output is parsed and returned as ``message.tool_calls`` with
``finish_reason: "tool_calls"`` (vLLM does the same for these two modes). ``"none"`` ignores the tools.
``"auto"`` (OpenAI's default when tools are sent) would need the model to choose between text and a
call, which a 135M model without a tool-call format in its chat template cannot do reliably: it is a
400 with that reason. One call per request; streaming with tools is a 400 too.

The conversation continues the way OpenAI's does: the client sends back the assistant message with its
``tool_calls`` and a ``tool`` message (``tool_call_id``, ``content``) with each result. A chat template
that knows tools (its source mentions ``tool_calls``) gets them as structured messages; one that does
not (SmolLM2's ChatML template renders only role and content) gets them in a plain form, the one
Hermes- and Qwen-style templates use: the assistant's calls as ``<tool_call>{"name": ..., "arguments":
...}</tool_call>`` lines in its content, and each result as a ``user`` turn ``<tool_response>...
</tool_response>`` (:func:`plain_tool_call`, :func:`plain_tool_result`).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ch04_kvcache.structured_output import StructuredOutput, StructuredOutputError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FunctionDef(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDef


class FunctionName(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)]


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class FunctionCall(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    arguments: Annotated[str, Field(max_length=100_000)]   # a JSON string, as OpenAI sends it


class ToolCall(_Strict):
    """A call the assistant made, as the client sends it back in ``messages[].tool_calls``."""

    id: Annotated[str, Field(min_length=1, max_length=128)]
    type: Literal["function"]
    function: FunctionCall

    def arguments(self) -> Any:
        """The arguments as JSON values (the string itself when it is not JSON)."""
        try:
            return json.loads(self.function.arguments)
        except json.JSONDecodeError:
            return self.function.arguments


def plain_tool_call(call: ToolCall) -> str:
    """One call in the plain form: ``<tool_call>`` + ``{"name", "arguments"}`` JSON + ``</tool_call>``."""
    body = json.dumps({"name": call.function.name, "arguments": call.arguments()}, ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


def plain_tool_result(content: str) -> str:
    """One tool result in the plain form, for a ``user`` turn."""
    return f"<tool_response>\n{content}\n</tool_response>"


def template_knows_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template renders ``tool_calls`` itself (else the plain form is used)."""
    return "tool_calls" in (getattr(tokenizer, "chat_template", None) or "")


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """How to read the constrained output back: one named function, or ``{"name", "arguments"}``."""

    name: str | None      # None: "required", the output names the function


def _params(f: FunctionDef) -> dict[str, Any]:
    return f.parameters if f.parameters is not None else {"type": "object"}


def tool_plan(body: Any) -> ToolPlan | None:
    """What the request's ``tools``/``tool_choice`` ask for, or None (no tools, or ``"none"``); raises
    ``StructuredOutputError`` naming ``tool_choice``, ``tools`` or ``stream`` for what cannot be served."""
    tools: list[Tool] | None = getattr(body, "tools", None)
    choice = getattr(body, "tool_choice", None)
    if not tools:
        if choice not in (None, "none"):
            raise StructuredOutputError("tool_choice", "needs 'tools'")
        return None
    choice = "auto" if choice is None else choice
    if choice == "none":
        return None
    if choice == "auto":
        raise StructuredOutputError("tool_choice", "'auto' (the default when tools are sent) is not supported: this "
                                                   "server makes tool calls by grammar, so send tool_choice "
                                                   "'required' or {'type': 'function', 'function': {'name': ...}}")
    if getattr(body, "stream", False):
        raise StructuredOutputError("stream", "streaming with tools is not supported; send stream: false")
    names = [t.function.name for t in tools]
    if len(set(names)) != len(names):
        raise StructuredOutputError("tools", "function names must be unique")
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in names:
            raise StructuredOutputError("tool_choice", f"no tool named {choice.function.name!r} in 'tools'")
        return ToolPlan(choice.function.name)
    return ToolPlan(None)


def tool_constraint(body: Any, plan: ToolPlan) -> StructuredOutput:
    """The grammar of the call ``plan`` reads back (a bad ``parameters`` schema names ``tools``)."""
    by_name = {t.function.name: t.function for t in body.tools}
    try:
        if plan.name is not None:
            return StructuredOutput.json_schema(_params(by_name[plan.name]))
        return StructuredOutput.json_schema(
            {"anyOf": [{"type": "object", "properties": {"name": {"const": n}, "arguments": _params(f)},
                        "required": ["name", "arguments"], "additionalProperties": False}
                       for n, f in by_name.items()]})
    except StructuredOutputError as exc:
        raise StructuredOutputError("tools", f"a function's parameters: {exc.reason}") from None


def tool_message(plan: ToolPlan, text: str) -> dict[str, Any] | None:
    """The assistant message with ``tool_calls`` from the constrained output, or None when the output is
    not a complete call (cut by ``max_tokens``): the caller then returns the text with ``length``."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    name, args = (plan.name, obj) if plan.name is not None else (obj.get("name"), obj.get("arguments"))
    call = {"id": "call_" + secrets.token_hex(12), "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}}
    return {"role": "assistant", "content": None, "tool_calls": [call]}
