"""Exact speculative sampling (book 7.2, 7.3.1): a drafter proposes, the target verifies in ONE pass.

Each round:

1. the drafter proposes ``k <= gamma`` tokens x_1..x_k, each drawn from its distribution q_i (a draft
   model samples them; prompt lookup copies them, i.e. q_i is one-hot);
2. the target runs one forward pass over [pending token, x_1..x_k] on its ``ContiguousKVCache`` and gets
   p_1..p_{k+1} (the distribution before each draft token, plus one after the last);
3. x_i is accepted with probability min(1, p_i(x_i) / q_i(x_i)); at the first rejection the round's last
   token is drawn from the residual norm(max(0, p_i - q_i)); if all k are accepted, a bonus token is
   drawn from p_{k+1}. At temperature 0 "accept" means x_i == argmax p_i and the residual is argmax p_i.
4. both caches roll back to the accepted prefix with ``ContiguousKVCache.truncate``.

That rule makes every emitted token distributed exactly as the target alone would sample it (Leviathan
et al. 2023; Chen et al. 2023): ``tests/ch07/test_speculative.py`` checks identical greedy tokens against
``ch04_kvcache.generate`` and a chi-square test of sampled tokens at temperature 1.

    python -m ch07_speculative.speculative --draft-layers 10 --gamma 4 --prompt "Name three primary colors."
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from ch04_kvcache.kv_cache import ContiguousKVCache
from ch04_kvcache.model import LlamaModel


class ModelRunner:
    """One model and its ``ContiguousKVCache`` for one sequence: feed tokens, read logits, roll back."""

    def __init__(self, model: LlamaModel, max_len: int, cache: ContiguousKVCache | None = None) -> None:
        self.model = model
        self.cache = cache if cache is not None else ContiguousKVCache(model.config, 1, max_len, model.device,
                                                                       model.dtype)

    @property
    def length(self) -> int:
        return self.cache.length

    def feed(self, ids: Sequence[int], keep: int = 1) -> torch.Tensor:
        """Append ``ids`` to the cache; fp32 logits (keep, V) of the last ``keep`` of them."""
        x = torch.tensor([list(ids)], device=self.model.device)  # (1, T)
        return self.model(x, cache=self.cache, logits_to_keep=keep)[0].float()

    def truncate(self, n: int) -> None:
        self.cache.truncate(min(n, self.cache.length))


@dataclass
class Draft:
    """What a drafter proposes: tokens and the distributions they were drawn from.

    ``probs`` (k, V): q_i for each token; None means the tokens were chosen deterministically (one-hot q).
    """

    tokens: list[int]
    probs: torch.Tensor | None = None


class Drafter(Protocol):
    """Anything that proposes continuations of ``seq`` (draft model, prompt lookup, ...)."""

    def start(self, max_len: int) -> None: ...

    def propose(self, seq: list[int], gamma: int, temperature: float,
                generator: torch.Generator | None) -> Draft: ...

    def rollback(self, valid_len: int) -> None: ...


class ModelDrafter:
    """A smaller (or cheaper) causal LM with its own KV cache: proposes by sampling from itself."""

    def __init__(self, model: LlamaModel) -> None:
        self.model = model
        self.runner: ModelRunner | None = None

    def start(self, max_len: int) -> None:
        self.runner = ModelRunner(self.model, max_len)

    def propose(self, seq: list[int], gamma: int, temperature: float,
                generator: torch.Generator | None) -> Draft:
        assert self.runner is not None, "call start() first"
        new = seq[self.runner.length:]  # what the draft cache lacks (the whole prompt on the first round)
        tokens: list[int] = []
        probs: list[torch.Tensor] = []
        for _ in range(gamma):
            logits = self.runner.feed(new)[-1]  # (V,)
            if temperature <= 0:
                tok = int(torch.argmax(logits))
            else:
                q = torch.softmax(logits / temperature, -1)
                tok = int(torch.multinomial(q.cpu(), 1, generator=generator))
                probs.append(q)
            tokens.append(tok)
            new = [tok]
        return Draft(tokens, torch.stack(probs) if probs else None)

    def rollback(self, valid_len: int) -> None:
        assert self.runner is not None
        self.runner.truncate(valid_len)


class SharedCacheDrafter(ModelDrafter):
    """A draft made *from the target* (quantized, or its first blocks) that reads the target's KV cache.

    Such a draft would compute K/V close to (quantized) or equal to (first blocks) the target's, so it
    keeps no cache and runs no prefill of its own: it appends its guesses to the target's cache, takes them
    back after proposing, and the target's verification pass writes its exact K/V in their place
    (LayerSkip, Elhoushi et al. 2024; QSpec, Zhao et al. 2024). The output stays exact, because the target
    verifies from its own K/V; only the acceptance rate could change. What it saves is the draft's pass
    over the prompt, which for a quantized copy of the target costs as much as the target's own prefill.
    """

    def start(self, max_len: int) -> None:
        self.runner = None  # bound to the target's cache by speculative_generate

    def bind(self, target: ModelRunner) -> None:
        mine, theirs = self.model.config, target.model.config
        if (mine.num_kv_heads, mine.head_dim) != (theirs.num_kv_heads, theirs.head_dim) or \
                mine.num_layers > theirs.num_layers:
            raise ValueError("a shared-cache draft needs the target's K/V shapes and at most its number of layers")
        self.runner = ModelRunner(self.model, 0, cache=target.cache)

    def propose(self, seq: list[int], gamma: int, temperature: float,
                generator: torch.Generator | None) -> Draft:
        assert self.runner is not None, "speculative_generate binds the draft to the target's cache"
        start = self.runner.length
        try:
            return super().propose(seq, gamma, temperature, generator)
        finally:
            self.runner.truncate(start)  # the target overwrites those slots with its own K/V


@dataclass
class SpecStats:
    rounds: int = 0  # target verification passes (= target steps after the prefill)
    drafted: int = 0
    accepted: int = 0
    emitted: int = 0  # tokens produced by the rounds (before cutting at max_new_tokens / EOS)
    draft_s: float = 0.0
    target_s: float = 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else float("nan")

    @property
    def tokens_per_target_step(self) -> float:
        return self.emitted / self.rounds if self.rounds else float("nan")


@dataclass
class SpecResult:
    token_ids: list[int]  # new tokens only
    finish_reason: str  # "length" | "stop"
    wall_s: float
    stats: SpecStats = field(default_factory=SpecStats)


def _rand(generator: torch.Generator | None) -> float:
    return float(torch.rand(1, generator=generator))


def verify(logits: torch.Tensor, draft: Draft, temperature: float,
           generator: torch.Generator | None) -> tuple[int, int]:
    """Rejection-sample ``draft`` against target logits (k+1, V): return (accepted count, next token)."""
    k = len(draft.tokens)
    if temperature <= 0:
        choice = torch.argmax(logits, -1).tolist()  # (k+1,) the target's own greedy tokens
        n = 0
        while n < k and draft.tokens[n] == choice[n]:
            n += 1
        return n, choice[n]
    p = torch.softmax(logits / temperature, -1)  # (k+1, V)
    for i, x in enumerate(draft.tokens):
        q_x = 1.0 if draft.probs is None else float(draft.probs[i, x])
        if _rand(generator) < min(1.0, float(p[i, x]) / q_x):
            continue
        if draft.probs is None:
            residual = p[i].clone()
            residual[x] = 0.0  # max(0, p - onehot(x))
        else:
            residual = (p[i] - draft.probs[i]).clamp_min(0.0)
        if float(residual.sum()) <= 0.0:  # only reachable through rounding: p == q
            residual = p[i]
        return i, int(torch.multinomial((residual / residual.sum()).cpu(), 1, generator=generator))
    return k, int(torch.multinomial(p[k].cpu(), 1, generator=generator))


def emit_tokens(out: list[int], new: Sequence[int], stop: Container[int], max_new_tokens: int) -> bool:
    """Append the tokens a round produced to ``out``, up to a stop token or the budget.

    Returns True when a stop token was emitted (the caller finishes with reason "stop").
    """
    for tok in new:
        out.append(tok)
        if tok in stop:
            return True
        if len(out) >= max_new_tokens:
            return False
    return False


def record_round(stats: SpecStats, seq: list[int], out: list[int], new: Sequence[int], drafted: int,
                 stop: Container[int], max_new_tokens: int) -> bool:
    """Book one verification round that checked ``drafted`` tokens and produced ``new`` (the accepted drafts,
    then the target's own token): stats, the running sequence, and ``out`` through :func:`emit_tokens`.

    Returns True when a stop token was emitted (the caller finishes with reason "stop").
    """
    stats.rounds += 1
    stats.drafted += drafted
    stats.accepted += len(new) - 1
    stats.emitted += len(new)
    seq.extend(new)
    return emit_tokens(out, new, stop, max_new_tokens)


def stop_tokens(target: LlamaModel, eos_token_id: int | Sequence[int] | None) -> set[int]:
    """The tokens that end generation: -1 = the target config's EOS ids, None = none, else the given id(s)."""
    if eos_token_id == -1:
        return set(target.config.eos_token_ids)
    if eos_token_id is None:
        return set()
    return {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id)


@torch.inference_mode()
def speculative_generate(target: LlamaModel, drafter: Drafter, prompt_ids: Sequence[int], max_new_tokens: int,
                         gamma: int = 4, temperature: float = 0.0, seed: int | None = None,
                         eos_token_id: int | Sequence[int] | None = -1) -> SpecResult:
    """Generate like ``ch04_kvcache.generate(target, ...)`` but ``gamma`` drafted tokens per target pass."""
    if not prompt_ids:
        raise ValueError("the prompt needs at least one token")
    if max_new_tokens < 1 or gamma < 0:
        raise ValueError("max_new_tokens must be >= 1 and gamma >= 0")
    stop = stop_tokens(target, eos_token_id)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    max_len = len(prompt_ids) + max_new_tokens + gamma + 2
    t_start = time.perf_counter()
    tgt = ModelRunner(target, max_len)
    drafter.start(max_len)
    if isinstance(drafter, SharedCacheDrafter):
        drafter.bind(tgt)
    stats = SpecStats()
    seq = list(prompt_ids)
    if len(seq) > 1:  # the target's cache always holds seq[:-1]; the last token is "pending"
        tgt.feed(seq[:-1])
    out: list[int] = []
    finish = "length"
    while len(out) < max_new_tokens:
        k = min(gamma, max_new_tokens - len(out) - 1)  # never draft past the budget
        t0 = time.perf_counter()
        draft = drafter.propose(seq, k, temperature, gen) if k > 0 else Draft([])
        t1 = time.perf_counter()
        k = len(draft.tokens)
        logits = tgt.feed(seq[tgt.length:] + draft.tokens, keep=k + 1)  # ONE pass: (k+1, V)
        n_acc, nxt = verify(logits, draft, temperature, gen)
        stats.draft_s += t1 - t0
        stats.target_s += time.perf_counter() - t1
        valid = len(seq) + n_acc  # K/V of seq and of the accepted drafts are right; the rest is rolled back
        tgt.truncate(valid)
        drafter.rollback(valid)
        new = draft.tokens[:n_acc] + [nxt]
        if record_round(stats, seq, out, new, k, stop, max_new_tokens):
            finish = "stop"
            break
    return SpecResult(out, finish, time.perf_counter() - t_start, stats)


def load_chat_target(args: argparse.Namespace, prompt: str) -> tuple[LlamaModel, Any, list[int]]:
    """How ch07's CLIs start: seed everything, load the target (``--model``, ``--load-format``) and its tokenizer,
    and turn ``prompt`` into chat-template ids: ``(target, tokenizer, ids)``."""
    from common.chat import chat_ids
    from common.cli import seed_everything
    from common.loader import load_tokenizer

    seed_everything(args.seed)
    target = LlamaModel.from_pretrained(args.model, load_format=args.load_format)
    tok = load_tokenizer(args.model)
    return target, tok, chat_ids(tok, prompt)


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.generate import generate
    from ch07_speculative.drafts import truncated_draft
    from common.chat import FRANCE_PROMPT
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int

    parser = make_parser("python -m ch07_speculative.speculative", __doc__)
    add_common_args(parser)
    parser.add_argument("--prompt", default=FRANCE_PROMPT, help="user message (chat template applied)")
    parser.add_argument("--draft-layers", type=positive_int, default=10, help="layers of the self-draft")
    parser.add_argument("--gamma", type=positive_int, default=4, help="draft tokens per round")
    parser.add_argument("--max-new-tokens", type=positive_int, default=48, help="tokens to generate")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    args = parser.parse_args(argv)
    with friendly_errors():
        target, tok, ids = load_chat_target(args, args.prompt)
        n = 8 if args.smoke else args.max_new_tokens
        res = speculative_generate(target, ModelDrafter(truncated_draft(target, args.draft_layers)), ids, n,
                                   args.gamma, args.temperature, args.seed)
        print(tok.decode(res.token_ids, skip_special_tokens=True))
        s = res.stats
        print(f"acceptance {s.acceptance_rate:.2f}, {s.tokens_per_target_step:.2f} tokens per target step, "
              f"{res.wall_s:.2f} s")
        if args.temperature <= 0:
            ref = generate(target, ids, n, cache="contiguous")
            print(f"identical to the target alone: {ref.token_ids == res.token_ids}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
