"""Structured-output request fields (OpenAI ``response_format``, vLLM's ``structured_outputs`` and its
legacy ``guided_*`` fields) -> one ch04 :class:`~ch04_kvcache.structured_output.StructuredOutput` (8.1).

=============================================================  ================  ======================
request field                                                  StructuredOutput  who defines it
=============================================================  ================  ======================
``response_format: {"type": "json_object"}``                   ``json_object``   OpenAI
``response_format: {"type": "json_schema", "json_schema":      ``json_schema``   OpenAI
{"name": ..., "schema": {...}}}``
``structured_outputs: {"json" | "regex" | "choice" |           same kinds        vLLM (current)
"grammar" | "json_object": ...}``
``guided_json``, ``guided_regex``, ``guided_choice``,          same kinds        vLLM (before 0.12)
``guided_grammar``
``tools`` + ``tool_choice`` "required" or a named function      ``json_schema``   OpenAI (``tools.py``)
=============================================================  ================  ======================

A request may set one of them (``response_format: {"type": "text"}`` means none). The constraint is
validated when it is built (a JSON Schema against its meta-schema and by the grammar engine; a regex or
grammar must parse); a bad one raises :class:`~ch04_kvcache.structured_output.StructuredOutputError`
whose ``field`` is the request field (``response_format.json_schema.schema``, ``guided_regex``, ...): the
server answers 400 naming it. The engine applies the grammar (ch05 ``structured.py``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ch04_kvcache.structured_output import StructuredOutput, StructuredOutputError
from ch08_production.tools import tool_constraint, tool_plan

__all__ = ["ResponseFormat", "StructuredOutputError", "StructuredOutputsField", "requested_field",
           "structured_output", "vllm_structured_outputs"]

MAX_SPEC_CHARS = 100_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class JSONSchemaFormat(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=64)] = "response"
    description: str | None = None
    schema_: Annotated[dict[str, Any], Field(alias="schema")] = Field(default_factory=dict)
    strict: bool | None = None

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StructuredOutputsField(_Strict):
    """vLLM's ``structured_outputs`` object (one of its constraint fields)."""

    json_: Annotated[dict[str, Any] | str | None, Field(alias="json")] = None
    regex: Annotated[str, Field(max_length=MAX_SPEC_CHARS)] | None = None
    choice: Annotated[list[str], Field(min_length=1, max_length=256)] | None = None
    grammar: Annotated[str, Field(max_length=MAX_SPEC_CHARS)] | None = None
    json_object: bool | None = None

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


def _candidates(body: Any) -> list[tuple[str, Any]]:
    """``(request field, builder)`` for every structured-output field the request set."""
    out: list[tuple[str, Any]] = []
    rf: ResponseFormat | None = getattr(body, "response_format", None)
    if rf is not None and rf.type == "json_object":
        out.append(("response_format", lambda: StructuredOutput("json_object")))
    elif rf is not None and rf.type == "json_schema":
        if rf.json_schema is None:
            raise StructuredOutputError("response_format.json_schema", "is required when type is 'json_schema'")
        out.append(("response_format.json_schema.schema", lambda: StructuredOutput.json_schema(rf.json_schema.schema_)))
    so: StructuredOutputsField | None = getattr(body, "structured_outputs", None)
    if so is not None:
        set_ = [k for k in ("json_", "regex", "choice", "grammar", "json_object") if getattr(so, k) is not None]
        if len(set_) != 1:
            raise StructuredOutputError("structured_outputs", "set exactly one of json, regex, choice, grammar, "
                                                              f"json_object (got {len(set_)})")
        k = set_[0]
        out.append((f"structured_outputs.{k.rstrip('_')}", lambda: _build(k.rstrip("_"), getattr(so, k))))
    plan = tool_plan(body)
    if plan is not None:
        out.append(("tools", lambda: tool_constraint(body, plan)))
    for name, kind in (("guided_json", "json"), ("guided_regex", "regex"), ("guided_choice", "choice"),
                       ("guided_grammar", "grammar")):
        v = getattr(body, name, None)
        if v is not None:
            out.append((name, lambda kind=kind, v=v: _build(kind, v)))
    return out


def _build(kind: str, value: Any) -> StructuredOutput:
    if kind == "json":
        return StructuredOutput.json_schema(value)
    if kind == "choice":
        return StructuredOutput.choice(value)
    if kind == "json_object":
        if value is not True:
            raise StructuredOutputError("json_object", "must be true")
        return StructuredOutput("json_object")
    return StructuredOutput(kind, value)


def requested_field(body: Any) -> str | None:
    """The top-level request field that carries the constraint (``response_format``, ``guided_json``, ...)."""
    found = _candidates(body)
    return found[0][0].split(".")[0] if found else None


def structured_output(body: Any) -> StructuredOutput | None:
    """The request's one constraint, or None; a bad or doubled one raises ``StructuredOutputError`` whose
    ``field`` is the request field to name in the 400."""
    found = _candidates(body)
    if not found:
        return None
    if len(found) > 1:
        names = ", ".join(f for f, _ in found)
        raise StructuredOutputError(found[1][0].split(".")[0], f"send one structured-output constraint, got {names}")
    field, build = found[0]
    try:
        return build()
    except StructuredOutputError as exc:
        raise StructuredOutputError(field, exc.reason) from None


def vllm_structured_outputs(so: StructuredOutput) -> dict[str, Any]:
    """``so`` as vLLM's ``structured_outputs`` request object (compact JSON whitespace, as our engine)."""
    if so.kind == "json_object":
        return {"json_object": True, "disable_any_whitespace": True}
    if so.kind == "json_schema":
        return {"json": so.schema, "disable_any_whitespace": True}
    if so.kind == "choice":
        return {"choice": list(so.spec)}
    return {so.kind: so.spec}
