"""Prompt lookup (n-gram) speculation: drafts copied from the text itself, no draft model (book 7.3.2, 7.5.4).

When the answer repeats the input (rewrite, summarise, edit code, quote a document), the next tokens often
already appear in the context. :class:`PromptLookupDrafter` finds the most recent earlier occurrence of
the last ``n`` tokens (n from ``max_ngram`` down to ``min_ngram``) and proposes the ``gamma`` tokens that
followed it. The drafts are deterministic (q is one-hot), so the exact verification of
``speculative.py`` applies unchanged: greedy output is identical to the target alone, and at
temperature > 0 a draft x is accepted with probability p(x). The draft costs no forward pass (c ~ 0).
This is what ``transformers``' ``prompt_lookup_num_tokens`` and vLLM's ``"method": "ngram"`` do.

    python -m ch07_speculative.prompt_lookup --smoke   # rewrite a paragraph; speedup vs the target alone
"""

from __future__ import annotations

import torch

from ch07_speculative.speculative import Draft

REWRITE_PARAGRAPH = (
    "The KV cache stores the keys and values of every token that the model has already processed, so "
    "that each new token only needs to attend to them instead of recomputing the whole prefix. Its size "
    "grows linearly with the sequence length and the batch size, which is why memory, not compute, "
    "usually limits how many requests a server can handle at the same time."
)
REWRITE_PROMPT = f"Repeat the following paragraph exactly, word for word:\n\n{REWRITE_PARAGRAPH}"


def find_continuation(seq: list[int], gamma: int, max_ngram: int = 3, min_ngram: int = 1) -> list[int]:
    """Up to ``gamma`` tokens that followed the latest earlier match of seq's last n-gram (longest n first)."""
    for n in range(min(max_ngram, len(seq) - 1), min_ngram - 1, -1):
        tail = seq[-n:]
        for start in range(len(seq) - n - 1, -1, -1):  # most recent match first, excluding the tail itself
            if seq[start:start + n] == tail:
                cont = seq[start + n: start + n + gamma]
                if cont:
                    return cont
    return []


class PromptLookupDrafter:
    """Drafter for ``speculative_generate``: copies continuations of the last n-gram from the context."""

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1) -> None:
        if not 1 <= min_ngram <= max_ngram:
            raise ValueError(f"need 1 <= min_ngram <= max_ngram, got {min_ngram}, {max_ngram}")
        self.max_ngram, self.min_ngram = max_ngram, min_ngram

    def start(self, max_len: int) -> None:  # no state: nothing to allocate
        pass

    def propose(self, seq: list[int], gamma: int, temperature: float,
                generator: torch.Generator | None) -> Draft:
        return Draft(find_continuation(seq, gamma, self.max_ngram, self.min_ngram))

    def rollback(self, valid_len: int) -> None:  # no cache to roll back
        pass


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.generate import generate
    from ch07_speculative.speculative import load_chat_target, speculative_generate
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch07_speculative.prompt_lookup", __doc__)
    add_common_args(parser)
    parser.add_argument("--gamma", type=positive_int, default=8, help="tokens copied per round")
    parser.add_argument("--max-ngram", type=positive_int, default=3, help="longest n-gram to match")
    parser.add_argument("--max-new-tokens", type=positive_int, default=80, help="tokens to generate")
    args = parser.parse_args(argv)
    with friendly_errors():
        target, tok, ids = load_chat_target(args, REWRITE_PROMPT)
        n = 24 if args.smoke else args.max_new_tokens
        generate(target, ids, 2)  # warm-up
        ref = generate(target, ids, n, cache="contiguous")
        base_s = ref.timings.prefill_s + ref.timings.decode_s
        res = speculative_generate(target, PromptLookupDrafter(args.max_ngram), ids, n, args.gamma)
        s = res.stats
        row = {"method": "prompt lookup", "tokens": len(res.token_ids), "s": res.wall_s, "target_s": base_s,
               "speedup": base_s / res.wall_s, "accept": s.acceptance_rate, "tok/step": s.tokens_per_target_step,
               "identical": res.token_ids == ref.token_ids}
        if not args.json:
            print(tok.decode(res.token_ids, skip_special_tokens=True))
            print_table([row], title="prompt lookup vs the target alone (greedy, batch 1)")
        emit_json({**{k.replace("/", "_per_"): v for k, v in row.items()}, "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
