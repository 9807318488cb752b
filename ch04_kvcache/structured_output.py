"""What a request's output must look like: one structured-output constraint, as data (vLLM's
``StructuredOutputsParams``, one field of :class:`~ch04_kvcache.sampling.SamplingParams`).

A :class:`StructuredOutput` is a ``kind`` and a ``spec``:

================  ==========================================================================
kind              spec
================  ==========================================================================
``json_object``   ``""``: any JSON object (OpenAI's ``response_format: {"type": "json_object"}``)
``json_schema``   the JSON Schema as canonical JSON text (sorted keys), so equal schemas are equal
``regex``         a regular expression the whole output must match
``choice``        a tuple of strings: the output is exactly one of them
``grammar``       an EBNF grammar (xgrammar's GBNF dialect, what vLLM's ``grammar`` field takes), rule ``root``
================  ==========================================================================

Only the *description* lives here, validated once when it is built: a JSON Schema must be valid
(``jsonschema``'s meta-schema check) and one the grammar engine can turn into a grammar; a regex and a
grammar must parse. A bad one raises :class:`StructuredOutputError` naming the kind, which a server
turns into a 400 naming its request field. Compiling it against a tokenizer and masking the logits
step by step is the engine's work: ``ch05_scheduling/structured.py``.

    python -m ch04_kvcache.structured_output        # a few constraints, valid and not, printed
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from common.errors import UsageError

KINDS = ("json_object", "json_schema", "regex", "choice", "grammar")
MAX_CHOICES = 256


class StructuredOutputError(UsageError):
    """A constraint that cannot be used; ``field`` is its kind (``json_schema``, ``regex``, ...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"invalid {field}: {message}")
        self.field = field
        self.reason = message


def _engine_message(exc: BaseException) -> str:
    """xgrammar's C++ errors start with '[time] /path/file.cc:123: '; keep the sentence after it."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", text)[:300]


@dataclass(frozen=True, slots=True)
class StructuredOutput:
    """One constraint on a request's output (see the module docstring for ``kind`` and ``spec``)."""

    kind: str
    spec: str | tuple[str, ...] = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise StructuredOutputError("structured_outputs", f"kind must be one of {', '.join(KINDS)}, "
                                                              f"got {self.kind!r}")
        getattr(self, f"_check_{self.kind}")()

    # ------------------------------------------------------------------ builders
    @classmethod
    def json_schema(cls, schema: dict[str, Any] | str) -> StructuredOutput:
        """From a schema (dict or JSON text); the spec is its canonical JSON text."""
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as exc:
                raise StructuredOutputError("json_schema", f"not valid JSON ({exc})") from None
        if not isinstance(schema, dict):
            raise StructuredOutputError("json_schema", f"must be a JSON object, got {type(schema).__name__}")
        return cls("json_schema", json.dumps(schema, sort_keys=True, ensure_ascii=False))

    @classmethod
    def choice(cls, choices: list[str] | tuple[str, ...]) -> StructuredOutput:
        return cls("choice", tuple(choices))

    @property
    def schema(self) -> dict[str, Any]:
        """The JSON Schema of a ``json_schema`` constraint."""
        return json.loads(self.spec) if self.kind == "json_schema" else {}

    # ------------------------------------------------------------------ validation, one per kind
    def _check_json_object(self) -> None:
        if self.spec:
            raise StructuredOutputError("json_object", "takes no spec")

    def _check_json_schema(self) -> None:
        import jsonschema
        import xgrammar as xgr

        if not isinstance(self.spec, str):
            raise StructuredOutputError("json_schema", "spec must be JSON text")
        try:
            schema = json.loads(self.spec)
        except json.JSONDecodeError as exc:
            raise StructuredOutputError("json_schema", f"not valid JSON ({exc})") from None
        if not isinstance(schema, dict):
            raise StructuredOutputError("json_schema", f"must be a JSON object, got {type(schema).__name__}")
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.path) or "(root)"
            raise StructuredOutputError("json_schema", f"not a valid JSON Schema at {where}: "
                                                       f"{exc.message[:200]}") from None
        try:
            xgr.Grammar.from_json_schema(self.spec, any_whitespace=False)
        except Exception as exc:  # noqa: BLE001 - xgrammar raises RuntimeError/ValueError for what it cannot do
            raise StructuredOutputError("json_schema", f"the grammar engine cannot use it: "
                                                       f"{_engine_message(exc)}") from None

    def _check_regex(self) -> None:
        import xgrammar as xgr

        if not isinstance(self.spec, str) or not self.spec:
            raise StructuredOutputError("regex", "must be a non-empty string")
        try:
            xgr.Grammar.from_regex(self.spec)
        except Exception as exc:  # noqa: BLE001
            raise StructuredOutputError("regex", _engine_message(exc)) from None

    def _check_choice(self) -> None:
        if (not isinstance(self.spec, tuple) or not self.spec
                or not all(isinstance(c, str) and c for c in self.spec)):
            raise StructuredOutputError("choice", "must be a non-empty list of non-empty strings")
        if len(self.spec) > MAX_CHOICES:
            raise StructuredOutputError("choice", f"at most {MAX_CHOICES} choices, got {len(self.spec)}")

    def _check_grammar(self) -> None:
        import xgrammar as xgr

        if not isinstance(self.spec, str) or not self.spec.strip():
            raise StructuredOutputError("grammar", "must be a non-empty EBNF grammar with a 'root' rule")
        try:
            xgr.Grammar.from_ebnf(self.spec)
        except Exception as exc:  # noqa: BLE001
            raise StructuredOutputError("grammar", _engine_message(exc)) from None

    def choice_ebnf(self) -> str:
        """A ``choice`` constraint as an EBNF grammar: ``root ::= "a" | "b"`` (quotes and backslashes escaped)."""
        def lit(s: str) -> str:
            body = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
            return '"' + body.replace("\t", "\\t") + '"'

        return "root ::= " + " | ".join(lit(c) for c in self.spec)


def main(argv: list[str] | None = None) -> int:
    from common.cli import make_parser

    make_parser("python -m ch04_kvcache.structured_output", __doc__).parse_args(argv)
    good = [StructuredOutput("json_object"),
            StructuredOutput.json_schema({"type": "object", "properties": {"city": {"type": "string"}}}),
            StructuredOutput("regex", r"\d{3}-\d{4}"), StructuredOutput.choice(["yes", "no"])]
    for so in good:
        print(f"ok   {so.kind:12s} {so.spec!r}")
    for build in (lambda: StructuredOutput.json_schema({"type": "strnig"}),
                  lambda: StructuredOutput("regex", "[a-"),
                  lambda: StructuredOutput("grammar", "root ::= missing_rule")):
        try:
            build()
        except StructuredOutputError as exc:
            print(f"bad  {exc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
