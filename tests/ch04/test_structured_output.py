"""Structured outputs on ch04's loop: a bad constraint is one ValueError naming its kind; a JSON schema,
a regex and a choice constrain the real model's greedy output (parsed and validated); one compile per
schema text."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from ch04_kvcache.generate import generate
from ch04_kvcache.grammar import grammar_cache
from ch04_kvcache.sampling import SamplingParams
from ch04_kvcache.structured_output import StructuredOutput, StructuredOutputError
from common.chat import chat_ids

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}


@pytest.mark.parametrize(("build", "field", "words"), [
    (lambda: StructuredOutput.json_schema({"type": "strnig"}), "json_schema", "not a valid JSON Schema"),
    (lambda: StructuredOutput.json_schema("{not json"), "json_schema", "not valid JSON"),
    (lambda: StructuredOutput.json_schema([1, 2]), "json_schema", "must be a JSON object"),
    (lambda: StructuredOutput("regex", "[a-"), "regex", "Unclosed"),
    (lambda: StructuredOutput.choice([]), "choice", "non-empty"),
    (lambda: StructuredOutput("grammar", "root ::= nope"), "grammar", "not defined"),
    (lambda: StructuredOutput("xml"), "structured_outputs", "kind must be one of"),
])
def test_a_bad_constraint_is_one_value_error_naming_its_kind(build, field, words):
    with pytest.raises(ValueError, match=f"invalid {field}: .*{words}") as err:
        build()
    assert isinstance(err.value, StructuredOutputError) and err.value.field == field
    with pytest.raises(ValueError, match="structured_outputs"):
        SamplingParams(structured_outputs={"type": "json_object"})


def test_equal_schemas_compile_once(embedded_tokenizer):
    cache = grammar_cache(embedded_tokenizer, 49152, [2])
    before = cache.stats.misses
    a = StructuredOutput.json_schema({"type": "object", "properties": {"q": {"type": "boolean"}}})
    b = StructuredOutput.json_schema('{"properties": {"q": {"type": "boolean"}}, "type": "object"}')
    assert a == b and cache.get(a) is cache.get(b) and cache.stats.misses == before + 1


def _run(model, tok, question: str, so: StructuredOutput, n: int):
    res = generate(model, chat_ids(tok, question), n, params=SamplingParams(structured_outputs=so), tokenizer=tok)
    return tok.decode(res.token_ids, skip_special_tokens=True), res.finish_reason


def test_generate_under_schema_regex_and_choice(embedded_model, embedded_tokenizer):
    model, tok = embedded_model, embedded_tokenizer
    text, finish = _run(model, tok, "Invent a person; answer as JSON with name and age.",
                        StructuredOutput.json_schema(PERSON), 24)
    assert finish == "stop", text
    jsonschema.validate(json.loads(text), PERSON)
    text, finish = _run(model, tok, "Give me a phone number.", StructuredOutput("regex", r"\d{3}-\d{4}"), 12)
    assert finish == "stop" and re.fullmatch(r"\d{3}-\d{4}", text), text
    text, finish = _run(model, tok, "Is the sky blue? Answer yes or no.", StructuredOutput.choice(["yes", "no"]), 6)
    assert finish == "stop" and text in ("yes", "no")
    with pytest.raises(ValueError, match="needs the tokenizer"):
        generate(model, [1, 2], 2, params=SamplingParams(structured_outputs=StructuredOutput("json_object")))
