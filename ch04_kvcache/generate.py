"""The single-sequence generation loop every later chapter reuses (book 4.1, 4.2).

``generate(model, prompt_ids, max_new_tokens, cache=...)`` runs a prefill over the prompt, then one decode
step per new token, with one of four caches:

* ``"none"``: no cache, every step re-runs the whole prefix (the baseline of 4.2);
* ``"contiguous"``: ``ContiguousKVCache`` preallocated to prompt + max_new_tokens (4.3.1);
* ``"paged"``: ``PagedKVCache`` + ``forward_batch`` with one sequence, blocks handed out as it grows (4.3.2);
* ``"int8"``: ``Int8KVCache``, INT8 K/V with per-token, per-head scales (4.4.4).

Greedy decoding (temperature 0) gives identical tokens with every cache; ``tests/ch04`` proves it. Tokens
are picked by :func:`ch04_kvcache.sampling.sample_next` (temperature, top-k/top-p/min-p, penalties,
logprobs), the same sampler ch05's engine and ch08's server use; pass ``params=SamplingParams(...)`` for
the full set, or the ``temperature``/``top_p``/``top_k``/``seed`` shortcuts.

    python -m ch04_kvcache.generate --cache paged --prompt "Name three primary colors."
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ch04_kvcache.block_manager import BlockManager
from ch04_kvcache.kv_cache import ContiguousKVCache
from ch04_kvcache.model import LlamaModel
from ch04_kvcache.paged_attention import AttentionMetadata
from ch04_kvcache.paged_cache import PagedKVCache
from ch04_kvcache.sampling import SamplingParams, TokenLogprob, sample_next
from common.device import synchronize

CACHE_KINDS = ("none", "contiguous", "paged", "int8")
CONFIG_EOS = -1  # eos_token_id default: stop at the model config's EOS token(s); None never stops early


@dataclass
class GenerationTimings:
    prefill_s: float = 0.0
    decode_s: float = 0.0
    decode_steps: int = 0
    step_s: list[float] = field(default_factory=list)  # wall time of each decode step (sampling included)

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_steps / self.decode_s if self.decode_s > 0 else float("nan")


@dataclass
class GenerationResult:
    token_ids: list[int]  # the new tokens only (prompt excluded)
    prompt_len: int
    finish_reason: str  # "length" | "stop"
    timings: GenerationTimings = field(default_factory=GenerationTimings)
    cache_nbytes: int = 0  # bytes the cache reserved (0 without a cache)
    logprobs: list[TokenLogprob] | None = None  # one per new token when SamplingParams.logprobs is set


class Stepper:
    """One sequence's model state for one cache kind: ``step(new_ids) -> logits (V,)`` of the last token."""

    nbytes: int = 0

    def step(self, new_ids: list[int]) -> torch.Tensor:
        raise NotImplementedError


class NoCacheStepper(Stepper):
    """Re-runs the model over the whole sequence every step (4.2's baseline)."""

    def __init__(self, model: LlamaModel) -> None:
        self.model, self.ids = model, []

    def step(self, new_ids: list[int]) -> torch.Tensor:
        self.ids.extend(new_ids)
        return self.model(torch.tensor([self.ids], device=self.model.device), logits_to_keep=1)[0, -1]


class ContiguousStepper(Stepper):
    """A ``ContiguousKVCache`` (or ``Int8KVCache``) preallocated to ``max_tokens``."""

    def __init__(self, model: LlamaModel, max_tokens: int, int8: bool = False) -> None:
        self.model = model
        if int8:
            from ch04_kvcache.int8_kv import Int8KVCache

            self.cache = Int8KVCache(model.config, 1, max_tokens, model.device, model.dtype)
        else:
            self.cache = ContiguousKVCache(model.config, 1, max_tokens, model.device, model.dtype)
        self.nbytes = self.cache.nbytes

    def step(self, new_ids: list[int]) -> torch.Tensor:
        x = torch.tensor([new_ids], device=self.model.device)
        return self.model(x, cache=self.cache, logits_to_keep=1)[0, -1]


class PagedStepper(Stepper):
    """One sequence in a ``PagedKVCache``; its blocks come from a ``BlockManager`` as it grows."""

    def __init__(self, model: LlamaModel, max_tokens: int, block_size: int = 16) -> None:
        num_blocks = -(-max_tokens // block_size)
        self.model = model
        self.cache = PagedKVCache(model.config, num_blocks, block_size, model.device, model.dtype)
        self.blocks = BlockManager(num_blocks, block_size)
        self.length = 0
        self.nbytes = self.cache.nbytes

    def step(self, new_ids: list[int]) -> torch.Tensor:
        start, end = self.length, self.length + len(new_ids)
        if start == 0:
            self.blocks.allocate(0, new_ids)
        else:
            for t in new_ids:
                self.blocks.append_token(0, t)  # one sequence, nothing shared: never copy-on-write
        dev = self.model.device
        meta = AttentionMetadata([len(new_ids)], [end], [self.blocks.block_table(0)],
                                 torch.tensor(self.blocks.slot_mapping(0, start, end), device=dev))
        logits = self.model.forward_batch(torch.tensor(new_ids, device=dev), torch.arange(start, end, device=dev),
                                          self.cache, meta)
        self.length = end
        return logits[-1]


def make_stepper(model: LlamaModel, cache: str, max_tokens: int, block_size: int = 16) -> Stepper:
    """The stepper for ``cache`` in ``CACHE_KINDS``."""
    if cache not in CACHE_KINDS:
        raise ValueError(f"unknown cache {cache!r}; choose one of {', '.join(CACHE_KINDS)}")
    if cache == "none":
        return NoCacheStepper(model)
    if cache == "paged":
        return PagedStepper(model, max_tokens, block_size)
    return ContiguousStepper(model, max_tokens, int8=cache == "int8")


@torch.inference_mode()
def generate(model: LlamaModel, prompt_ids: Sequence[int], max_new_tokens: int, cache: str = "contiguous",
             temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, seed: int | None = None,
             eos_token_id: int | Sequence[int] | None = CONFIG_EOS, block_size: int = 16,
             params: SamplingParams | None = None, tokenizer: object | None = None) -> GenerationResult:
    """Generate up to ``max_new_tokens`` after ``prompt_ids`` with the chosen cache (see module doc).

    ``params`` (when given) replaces ``temperature``/``top_p``/``top_k``/``seed``; its ``max_tokens`` and
    stop strings are not used here (``max_new_tokens`` and ``eos_token_id`` are). Its
    ``structured_outputs`` masks every step's logits with a grammar (``grammar.py``), compiled against
    ``tokenizer``, which it then needs.
    """
    if not prompt_ids:
        raise ValueError("the prompt needs at least one token")
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be at least 1")
    if eos_token_id == CONFIG_EOS:
        stop = set(model.config.eos_token_ids)
    elif eos_token_id is None:
        stop = set()
    else:
        stop = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id)
    if params is None:
        params = SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k, seed=seed)
    if params.n != 1:
        raise ValueError(f"generate() makes one sequence, got n={params.n}; ch05's engine samples n > 1 "
                         "completions on shared KV blocks (or call generate with choice_params(params, i))")
    matcher = None
    if params.structured_outputs is not None:
        if tokenizer is None:
            raise ValueError("structured_outputs needs the tokenizer (generate(..., tokenizer=tok)) "
                             "to compile its grammar")
        # xgrammar is imported only when a grammar is asked for
        from ch04_kvcache.grammar import grammar_cache

        matcher = grammar_cache(tokenizer, model.config.vocab_size, sorted(stop or model.config.eos_token_ids)
                                ).matcher(params.structured_outputs)
    gen = None
    if params.seed is not None:
        gen = torch.Generator().manual_seed(params.seed)
    prompt = list(prompt_ids)
    stepper = make_stepper(model, cache, len(prompt_ids) + max_new_tokens, block_size)
    run = stepper.step
    timings = GenerationTimings()
    out: list[int] = []
    logprobs: list[TokenLogprob] | None = None if params.logprobs is None else []
    finish = "length"
    t0 = time.perf_counter()
    logits = run(prompt)
    s = sample_next(_masked(logits, matcher), params, gen, prompt, out)
    synchronize(model.device)
    timings.prefill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    while True:
        nxt = s.token_id
        out.append(nxt)
        if logprobs is not None:
            logprobs.append(s.logprob)
        if nxt in stop:
            finish = "stop"
            break
        if matcher is not None and (not matcher.accept(nxt) or matcher.is_terminated):
            finish = "stop"
            break
        if len(out) >= max_new_tokens:
            break
        ts = time.perf_counter()
        logits = run([nxt])
        s = sample_next(_masked(logits, matcher), params, gen, prompt, out)
        timings.step_s.append(time.perf_counter() - ts)
        timings.decode_steps += 1
    synchronize(model.device)
    timings.decode_s = time.perf_counter() - t0
    return GenerationResult(out, len(prompt_ids), finish, timings, stepper.nbytes, logprobs)


def _masked(logits: torch.Tensor, matcher: object | None) -> torch.Tensor:
    """The step's logits (V,) with the grammar's forbidden tokens at -inf (unchanged without a grammar)."""
    if matcher is None:
        return logits
    from ch04_kvcache.grammar import apply_bitmask

    return apply_bitmask(logits.reshape(1, -1).clone(), [matcher])[0]


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.cli_model import model_from_args
    from common.chat import FRANCE_PROMPT, chat_ids
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.loader import load_tokenizer

    parser = make_parser("python -m ch04_kvcache.generate", __doc__)
    add_common_args(parser)
    parser.add_argument("--prompt", default=FRANCE_PROMPT, help="user message (chat template applied)")
    parser.add_argument("--cache", default="contiguous", choices=CACHE_KINDS, help="KV cache kind")
    parser.add_argument("--max-new-tokens", type=positive_int, default=64, help="tokens to generate")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    parser.add_argument("--top-k", type=int, default=0, help="0 = off")
    parser.add_argument("--min-p", type=float, default=0.0, help="0 = off")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, help="1 = off (vLLM's definition)")
    parser.add_argument("--presence-penalty", type=float, default=0.0, help="0 = off")
    parser.add_argument("--frequency-penalty", type=float, default=0.0, help="0 = off")
    args = parser.parse_args(argv)
    with friendly_errors():
        params = SamplingParams(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, min_p=args.min_p,
                                seed=args.seed, repetition_penalty=args.repetition_penalty,
                                presence_penalty=args.presence_penalty, frequency_penalty=args.frequency_penalty)
        model = model_from_args(args)
        tok = load_tokenizer(args.model)
        res = generate(model, chat_ids(tok, args.prompt), 8 if args.smoke else args.max_new_tokens,
                       cache=args.cache, params=params)
        print(tok.decode(res.token_ids, skip_special_tokens=True))
        t = res.timings
        print(f"[{args.cache}] prompt {res.prompt_len} tokens, {len(res.token_ids)} new ({res.finish_reason}); "
              f"prefill {t.prefill_s * 1e3:.1f} ms, decode {t.decode_tokens_per_s:.1f} tok/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
