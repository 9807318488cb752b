"""Structured outputs in ch05's engine: one batch mixing free and constrained requests on the real model
(constrained rows parse and validate, the free row is the token sequence it is alone), n > 1 choices each
walking the grammar, and a bad constraint refused at add_request."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from ch04_kvcache.model import LlamaModel
from ch04_kvcache.sampling import SamplingParams
from ch04_kvcache.structured_output import StructuredOutput
from ch05_scheduling.engine import EngineConfig, LLMEngine
from common.chat import chat_ids

SCHEMAS = [
    {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16},
                                      "country": {"type": "string", "maxLength": 16}},
     "required": ["city", "country"], "additionalProperties": False},
    {"type": "object", "properties": {"answer": {"type": "boolean"}, "confidence": {"enum": ["low", "high"]}},
     "required": ["answer", "confidence"], "additionalProperties": False},
    {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99}, "minItems": 2, "maxItems": 3},
]


@pytest.fixture(scope="module")
def engine(embedded_model_dir, embedded_tokenizer) -> LLMEngine:
    model = LlamaModel.from_pretrained(embedded_model_dir)
    return LLMEngine(EngineConfig(max_num_batched_tokens=256, num_blocks=128), model=model,
                     tokenizer=embedded_tokenizer)


def test_one_batch_of_free_and_constrained_requests(engine):
    tok = engine.tokenizer
    prompt = chat_ids(tok, "Name a big city and its country, as JSON.")
    free = SamplingParams(max_tokens=8)
    cons = [SamplingParams(max_tokens=32, structured_outputs=StructuredOutput.json_schema(s)) for s in SCHEMAS]
    cons += [SamplingParams(max_tokens=10, structured_outputs=StructuredOutput("regex", r"[A-Z][a-z]{1,9}")),
             SamplingParams(max_tokens=6, structured_outputs=StructuredOutput.choice(["Paris", "Tokyo", "Lima"])),
             SamplingParams(max_tokens=32, structured_outputs=StructuredOutput("json_object"))]
    outs = engine.generate([prompt] * (1 + len(cons)), [free, *cons])
    for schema, o in zip(SCHEMAS, outs[1:4], strict=True):
        assert o.finish_reason == "stop", o.text
        jsonschema.validate(json.loads(o.text), schema)
    assert re.fullmatch(r"[A-Z][a-z]{1,9}", outs[4].text) and outs[4].finish_reason == "stop"
    assert outs[5].text in ("Paris", "Tokyo", "Lima")
    assert outs[6].text.startswith("{")                     # json_object: an object, not any JSON value
    if outs[6].finish_reason == "stop":
        assert isinstance(json.loads(outs[6].text), dict)
    assert len(engine.structured) == 0                       # every matcher released with its request
    alone = engine.generate([prompt], free)[0]
    assert alone.token_ids == outs[0].token_ids              # the free row was not touched by the masks


def test_n2_choices_each_follow_the_schema_and_bad_constraints_fail_early(engine):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    sp = SamplingParams(max_tokens=24, temperature=1.0, seed=3, n=2,
                        structured_outputs=StructuredOutput.json_schema(schema))
    [out] = engine.generate([chat_ids(engine.tokenizer, "Is water wet? Answer as JSON.")], sp)
    assert len(out.outputs) == 2
    for c in out.outputs:
        assert c.finish_reason == "stop", c.text
        jsonschema.validate(json.loads(c.text), schema)
    with pytest.raises(ValueError, match="invalid regex"):
        engine.add_request([1, 2, 3], SamplingParams(structured_outputs=StructuredOutput("regex", "(")))
    assert not engine.has_unfinished()


def test_bench_measures_both_runs_with_the_same_token_count(engine):
    from ch05_scheduling.structured_bench import measure

    row = measure(engine, batch=2, max_tokens=4, reps=1)
    assert row["tokens"] == 8 and row["free_tok_s"] > 0 and row["schema_tok_s"] > 0
    assert row["grammar_ms_per_step"] > 0 and 0 < row["grammar_share_pct"] < 100
