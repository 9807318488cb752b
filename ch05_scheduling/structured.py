"""Structured outputs in the engine: each constrained request's grammar mask on the batch's logits.

A request whose :class:`~ch04_kvcache.sampling.SamplingParams` carries ``structured_outputs`` (ch04's
:class:`~ch04_kvcache.structured_output.StructuredOutput`: JSON object or schema, regex, choice, EBNF
grammar) decodes under a grammar. ch04's ``grammar.py`` has the parts (a compiled-grammar cache per
tokenizer, a matcher per request, the bitmask step); this module is what the engine keeps of them:

* :meth:`StructuredOutputs.prepare`: at ``add_request`` the grammar is compiled (or found in the cache:
  one compile per schema text), so a bad constraint fails there and the step loop never compiles.
* :meth:`StructuredOutputs.mask`: inside the runner's batched sampling step, the rows whose request has a
  grammar get their forbidden logits set to ``-inf`` (one bitmask for the batch, reused between steps);
  rows without one are untouched, and a batch without any pays nothing. A request's matcher is made the
  first time it samples, so each of an ``n > 1`` request's choices (forked after the shared prefill) walks
  the grammar on its own.
* :meth:`StructuredOutputs.accept`: after sampling, every constrained request accepts its token; the
  engine finishes (``"stop"``) those whose grammar terminated. Preemption by recompute keeps the matcher
  (the request keeps its output tokens too).

    python -m ch05_scheduling.structured --smoke     # free vs JSON-schema requests in one batch
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import xgrammar as xgr

from ch04_kvcache.grammar import GrammarCache, Matcher, apply_bitmask
from ch04_kvcache.sampling import SamplingParams
from ch04_kvcache.structured_output import StructuredOutput


class StructuredOutputs:
    """The engine's matchers, one per constrained sequence (choices of an n > 1 request included)."""

    def __init__(self, cache: GrammarCache) -> None:
        self.cache = cache
        self._matchers: dict[int, Matcher] = {}
        self._bitmask: torch.Tensor | None = None

    def prepare(self, so: StructuredOutput) -> None:
        """Compile ``so``'s grammar now (a cache hit when a request sent the same constraint before)."""
        self.cache.get(so)

    def mask(self, logits: torch.Tensor, seq_ids: Sequence[int], params: Sequence[SamplingParams]) -> torch.Tensor:
        """The batch's logits (L, V) with each constrained row masked by its grammar."""
        if all(p.structured_outputs is None for p in params):
            return logits
        matchers: list[Matcher | None] = []
        for sid, p in zip(seq_ids, params, strict=True):
            so = p.structured_outputs
            m = None
            if so is not None:
                m = self._matchers.get(sid)
                if m is None:
                    m = self._matchers[sid] = self.cache.matcher(so)
            matchers.append(m)
        if self._bitmask is None or self._bitmask.shape[0] < len(matchers):
            self._bitmask = xgr.allocate_token_bitmask(max(len(matchers), 8), self.cache.vocab_size)
        return apply_bitmask(logits, matchers, self._bitmask)

    def accept(self, sampled: dict[int, int]) -> list[int]:
        """Feed each constrained sequence its sampled token; return the ids whose grammar is terminated
        (or that sampled a token the grammar rejects, which the mask makes impossible): the engine ends them."""
        done = []
        for sid, tok in sampled.items():
            m = self._matchers.get(sid)
            if m is not None and (not m.accept(tok) or m.is_terminated):
                done.append(sid)
        return done

    def release(self, seq_id: int) -> None:
        self._matchers.pop(seq_id, None)

    def __contains__(self, seq_id: int) -> bool:
        return seq_id in self._matchers

    def __len__(self) -> int:
        return len(self._matchers)


def main(argv: list[str] | None = None) -> int:
    import json

    from ch05_scheduling.engine import EngineConfig, LLMEngine
    from common.chat import chat_ids
    from common.cli import add_common_args, friendly_errors, make_parser

    parser = make_parser("python -m ch05_scheduling.structured", __doc__)
    add_common_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        engine = LLMEngine(EngineConfig(model=args.model, device=args.device, dtype=args.dtype, max_num_seqs=4))
        schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                   "country": {"type": "string", "maxLength": 20}},
                  "required": ["city", "country"], "additionalProperties": False}
        n = 24 if args.smoke else 48
        prompt = chat_ids(engine.tokenizer, "Name a big city and its country, as JSON.")
        t0 = time.perf_counter()
        params = [SamplingParams(max_tokens=n),
                  SamplingParams(max_tokens=n, structured_outputs=StructuredOutput.json_schema(schema)),
                  SamplingParams(max_tokens=n, structured_outputs=StructuredOutput("regex", r"[A-Z][a-z]+, [A-Z]+")),
                  SamplingParams(max_tokens=n, structured_outputs=StructuredOutput.choice(["Paris", "Tokyo"]))]
        outs = engine.generate([prompt] * len(params), params)
        for p, o in zip(params, outs, strict=True):
            kind = p.structured_outputs.kind if p.structured_outputs else "free"
            print(f"{kind:12s} {o.text!r} ({o.finish_reason})")
        if outs[1].finish_reason == "stop":
            print(f"parsed:      {json.loads(outs[1].text)}")
        cache = engine.structured.cache
        print(f"{time.perf_counter() - t0:.2f} s; grammar cache: {len(cache)} compiled, "
              f"{cache.stats.compile_s * 1e3:.1f} ms compiling")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
