"""Lookahead decoding (book 7.3.3): Jacobi iterations plus an n-gram pool, greedy and lossless.

Jacobi decoding treats the next ``W`` tokens as unknowns: guess them, run ONE forward pass over
[pending token, guess_1..guess_W], and the output at each position is the model's update of the next
unknown. Every guess that equals the model's own prediction (a matching prefix) is exact and kept, as in
speculative verification; the rest of the outputs become the next guess (the Jacobi iteration).
Lookahead decoding (Fu et al. 2024) adds an n-gram pool harvested from those trajectories: whenever a
pooled n-gram starts with the current last token, its continuation is tried instead of the raw guess.

Simplification, stated plainly: the paper runs the 2-D lookahead window and several pool candidates in
the same pass with a custom attention mask; the ch04 model derives its mask from positions, so here each
pass verifies ONE candidate (a pool hit if any, else the Jacobi guess) and refreshes the window from the
same outputs. Output is identical to greedy decoding of the target either way (``tests/ch07``).

    python -m ch07_speculative.lookahead --smoke
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ch04_kvcache.model import LlamaModel
from ch07_speculative.speculative import (
    ModelRunner,
    SpecResult,
    SpecStats,
    load_chat_target,
    record_round,
    stop_tokens,
)


@dataclass
class NgramPool:
    """n-grams keyed by their first token, most recent first, at most ``per_key`` each."""

    n: int = 4
    per_key: int = 8
    table: dict[int, list[tuple[int, ...]]] = field(default_factory=dict)

    def add(self, gram: Sequence[int]) -> None:
        if len(gram) < 2:
            return
        gram = tuple(gram[: self.n])
        lst = self.table.setdefault(gram[0], [])
        if gram in lst:
            lst.remove(gram)
        lst.insert(0, gram)
        del lst[self.per_key:]

    def lookup(self, token: int) -> list[int]:
        """The continuation (after ``token``) of the most recent pooled n-gram starting with it."""
        grams = self.table.get(token)
        return list(grams[0][1:]) if grams else []


@torch.inference_mode()
def lookahead_generate(target: LlamaModel, prompt_ids: Sequence[int], max_new_tokens: int, window: int = 4,
                       ngram: int = 4, eos_token_id: int | Sequence[int] | None = -1) -> SpecResult:
    """Greedy decoding with Jacobi guesses and an n-gram pool; same tokens as ``generate(..., temperature=0)``."""
    if not prompt_ids or max_new_tokens < 1 or window < 1 or ngram < 2:
        raise ValueError("need a prompt, max_new_tokens >= 1, window >= 1 and ngram >= 2")
    stop = stop_tokens(target, eos_token_id)
    t_start = time.perf_counter()
    tgt = ModelRunner(target, len(prompt_ids) + max_new_tokens + window + 2)
    seq = list(prompt_ids)
    if len(seq) > 1:
        tgt.feed(seq[:-1])
    pool = NgramPool(ngram)
    for i in range(len(seq) - 1):  # the prompt's own n-grams seed the pool (helps input-grounded text)
        pool.add(seq[i: i + ngram])
    guess = list(seq[-window:])  # initial Jacobi guess: any tokens will do; the prompt's tail is cheap
    stats = SpecStats()
    out: list[int] = []
    finish = "length"
    while len(out) < max_new_tokens:
        k = min(window, max_new_tokens - len(out) - 1)
        hit = pool.lookup(seq[-1])[:k]
        draft = hit if len(hit) >= min(k, 2) else guess[:k]
        t0 = time.perf_counter()
        logits = tgt.feed(seq[tgt.length:] + draft, keep=len(draft) + 1)  # (k+1, V)
        stats.target_s += time.perf_counter() - t0
        choice = torch.argmax(logits, -1).tolist()
        n_acc = 0
        while n_acc < len(draft) and draft[n_acc] == choice[n_acc]:
            n_acc += 1
        for i, tok in enumerate(draft):  # Jacobi trajectories: each guess and the model's next predictions
            pool.add([tok, *choice[i + 1: i + ngram]])
        new = draft[:n_acc] + [choice[n_acc]]
        tgt.truncate(len(seq) + n_acc)
        # next guess: the model's outputs beyond what was accepted (shifted window), padded with the last
        guess = choice[n_acc + 1:] or [choice[-1]]
        guess += [guess[-1]] * (window - len(guess))
        if record_round(stats, seq, out, new, len(draft), stop, max_new_tokens):
            finish = "stop"
            break
    return SpecResult(out, finish, time.perf_counter() - t_start, stats)


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.generate import generate
    from ch07_speculative.prompt_lookup import REWRITE_PROMPT
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch07_speculative.lookahead", __doc__)
    add_common_args(parser)
    parser.add_argument("--prompt", default=REWRITE_PROMPT, help="user message (chat template applied)")
    parser.add_argument("--window", type=positive_int, default=4, help="Jacobi window / tokens verified per pass")
    parser.add_argument("--ngram", type=positive_int, default=4, help="n-gram size of the pool")
    parser.add_argument("--max-new-tokens", type=positive_int, default=64, help="tokens to generate")
    args = parser.parse_args(argv)
    with friendly_errors():
        target, _, ids = load_chat_target(args, args.prompt)
        n = 16 if args.smoke else args.max_new_tokens
        ref = generate(target, ids, n, cache="contiguous")
        base_s = ref.timings.prefill_s + ref.timings.decode_s
        res = lookahead_generate(target, ids, n, args.window, max(2, args.ngram))
        row = {"method": "lookahead", "s": res.wall_s, "target_s": base_s, "speedup": base_s / res.wall_s,
               "tok/step": res.stats.tokens_per_target_step, "identical": res.token_ids == ref.token_ids}
        if not args.json:
            print_table([row], title="lookahead (Jacobi + n-gram pool) vs the target alone, greedy")
        emit_json({"speedup": row["speedup"], "tokens_per_target_step": row["tok/step"],
                   "identical": row["identical"], "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
