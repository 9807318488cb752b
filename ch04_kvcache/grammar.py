"""Structured outputs at the sampling step: compile a constraint once, mask the logits, accept the token.

ch04's :class:`~ch04_kvcache.structured_output.StructuredOutput` only *describes* a constraint (JSON
object or schema, regex, choice, EBNF grammar). This module makes it act on a decoding loop with
xgrammar, the grammar engine vLLM's default structured-output backend uses, in three parts (the split of
vLLM V1's ``StructuredOutputManager``):

* :class:`GrammarCache`: one xgrammar ``GrammarCompiler`` per tokenizer (built once: it reads the whole
  vocabulary, ~0.2 s for SmolLM2's 49,152 tokens) and an LRU of compiled grammars keyed by
  ``(kind, spec)``: the spec is the schema's canonical JSON text, so a schema that a thousand requests
  send compiles once. :func:`grammar_cache` returns a tokenizer's one cache.
* :class:`Matcher`: one per request. It says which tokens may come next (a bitmask, one bit per
  vocabulary entry) and accepts every token the request samples.
* :func:`apply_bitmask`: the masking step. The matchers of the rows that have one fill their rows of one
  bitmask and xgrammar's kernel sets the forbidden logits of those rows to ``-inf``; other rows are
  untouched. The sampler then runs as usual: greedy, temperature, top-p, penalties and logprobs all see
  the masked logits (vLLM applies the mask before its sampler too).

When the grammar is complete only the stop token stays allowed, so the request ends on EOS with
``finish_reason == "stop"``; a request cut by ``max_tokens`` first ends with ``"length"`` and its JSON may
be unfinished. JSON grammars use xgrammar's compact whitespace (no free newlines: a 135M model given free
whitespace can loop on them). ch04's ``generate(..., tokenizer=tok)`` runs one constrained request with
this; ch05's engine runs a batch of them (``ch05_scheduling/structured.py``).

    python -m ch04_kvcache.grammar          # one JSON-schema request, masked vs free, on the embedded model
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import xgrammar as xgr

from ch04_kvcache.structured_output import StructuredOutput

MAX_CACHED_GRAMMARS = 256


@dataclass(slots=True)
class GrammarCacheStats:
    hits: int = 0
    misses: int = 0
    compile_s: float = 0.0   # total time spent compiling (misses only)


class GrammarCache:
    """The tokenizer's grammar compiler plus compiled grammars keyed by ``(kind, spec)`` (an LRU)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int],
                 max_entries: int = MAX_CACHED_GRAMMARS) -> None:
        self.vocab_size = vocab_size
        self.tokenizer_info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                                 stop_token_ids=list(stop_token_ids))
        self.compiler = xgr.GrammarCompiler(self.tokenizer_info, max_threads=2, cache_enabled=False)
        self.max_entries = max_entries
        self.stats = GrammarCacheStats()
        self._grammars: OrderedDict[tuple[str, Any], xgr.CompiledGrammar] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, so: StructuredOutput) -> xgr.CompiledGrammar:
        """The compiled grammar of ``so`` (compiled on the first request that sends it)."""
        key = (so.kind, so.spec)
        with self._lock:
            hit = self._grammars.get(key)
            if hit is not None:
                self._grammars.move_to_end(key)
                self.stats.hits += 1
                return hit
        t0 = time.perf_counter()
        compiled = self._compile(so)
        with self._lock:
            self.stats.misses += 1
            self.stats.compile_s += time.perf_counter() - t0
            self._grammars[key] = compiled
            while len(self._grammars) > self.max_entries:
                self._grammars.popitem(last=False)
        return compiled

    def _compile(self, so: StructuredOutput) -> xgr.CompiledGrammar:
        c = self.compiler
        if so.kind == "json_object":   # OpenAI's json_object is an object, not any JSON value
            return c.compile_json_schema('{"type": "object"}', any_whitespace=False)
        if so.kind == "json_schema":
            return c.compile_json_schema(so.spec, any_whitespace=False)
        if so.kind == "regex":
            return c.compile_regex(so.spec)
        if so.kind == "choice":
            return c.compile_grammar(so.choice_ebnf())
        return c.compile_grammar(so.spec)  # grammar: EBNF

    def matcher(self, so: StructuredOutput) -> Matcher:
        """A fresh matcher for one request."""
        return Matcher(xgr.GrammarMatcher(self.get(so)), self.vocab_size)

    def __len__(self) -> int:
        return len(self._grammars)


_CACHES: weakref.WeakKeyDictionary[Any, dict[int, GrammarCache]] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def grammar_cache(tokenizer: Any, vocab_size: int, stop_token_ids: Sequence[int]) -> GrammarCache:
    """The one :class:`GrammarCache` of this tokenizer (and model vocabulary size): engines rebuilt around
    the same tokenizer (ch08's restart) keep its compiled grammars."""
    with _CACHES_LOCK:
        per_tok = _CACHES.setdefault(tokenizer, {})
        cache = per_tok.get(vocab_size)
        if cache is None:
            cache = per_tok[vocab_size] = GrammarCache(tokenizer, vocab_size, stop_token_ids)
        return cache


class Matcher:
    """One request's position in its grammar."""

    __slots__ = ("_m", "vocab_size")

    def __init__(self, matcher: xgr.GrammarMatcher, vocab_size: int) -> None:
        self._m = matcher
        self.vocab_size = vocab_size

    def fill(self, bitmask: torch.Tensor, row: int) -> None:
        """Write the allowed next tokens into ``bitmask[row]``."""
        self._m.fill_next_token_bitmask(bitmask, row)

    def accept(self, token_id: int) -> bool:
        """Advance by a sampled token; False if the grammar rejects it (the mask makes that impossible)."""
        return self._m.accept_token(token_id)

    @property
    def is_terminated(self) -> bool:
        """The grammar is complete and its stop token was accepted: the request is done."""
        return self._m.is_terminated()


def apply_bitmask(logits: torch.Tensor, matchers: Sequence[Matcher | None],
                  bitmask: torch.Tensor | None = None) -> torch.Tensor:
    """Mask the rows of ``logits`` (L, V) whose matcher is not None (in place when ``logits`` is fp32,
    else on an fp32 copy, which xgrammar's CPU kernel needs); returns the masked logits. ``bitmask``: a
    reusable ``xgr.allocate_token_bitmask`` buffer with at least L rows."""
    rows = [i for i, m in enumerate(matchers) if m is not None]
    if not rows:
        return logits
    if logits.dtype != torch.float32:
        logits = logits.float()
    n, vocab = logits.shape[0], matchers[rows[0]].vocab_size
    if bitmask is None or bitmask.shape[0] < n:
        bitmask = xgr.allocate_token_bitmask(n, vocab)
    bitmask = bitmask[:n]
    for i in rows:
        matchers[i].fill(bitmask, i)
    if logits.device.type != "cpu":
        bitmask = bitmask.to(logits.device, non_blocking=True)
    xgr.apply_token_bitmask_inplace(logits, bitmask, vocab_size=vocab, indices=rows)
    return logits


def main(argv: list[str] | None = None) -> int:
    import json

    from ch04_kvcache.cli_model import model_from_args
    from ch04_kvcache.generate import generate
    from ch04_kvcache.sampling import SamplingParams
    from common.chat import chat_ids
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.loader import load_tokenizer

    parser = make_parser("python -m ch04_kvcache.grammar", __doc__)
    add_common_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        model = model_from_args(args)
        tok = load_tokenizer(args.model)
        schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                   "country": {"type": "string", "maxLength": 20}},
                  "required": ["city", "country"], "additionalProperties": False}
        prompt = chat_ids(tok, "Name a big city and its country, as JSON.")
        n = 24 if args.smoke else 48
        free = generate(model, prompt, n)
        t0 = time.perf_counter()
        so = StructuredOutput.json_schema(schema)
        res = generate(model, prompt, n, params=SamplingParams(structured_outputs=so), tokenizer=tok)
        wall = time.perf_counter() - t0
        text = tok.decode(res.token_ids, skip_special_tokens=True)
        print(f"free:        {tok.decode(free.token_ids, skip_special_tokens=True)!r} ({free.finish_reason})")
        print(f"json_schema: {text!r} ({res.finish_reason})")
        if res.finish_reason == "stop":
            print(f"parsed:      {json.loads(text)}")
        from ch04_kvcache import grammar  # this file runs as __main__; generate() used the module's cache

        cache = grammar.grammar_cache(tok, model.config.vocab_size, model.config.eos_token_ids)
        print(f"{wall:.2f} s; grammar cache: {len(cache)} compiled, {cache.stats.compile_s * 1e3:.1f} ms compiling")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
