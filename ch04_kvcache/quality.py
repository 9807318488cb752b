"""Quality checks shared by the KV-cache variants (book 4.4.2 GQA conversion, 4.4.4 INT8 KV).

* :func:`perplexity`: exp(mean NLL) over non-overlapping windows of a fixed token stream
  (``common.datasets.eval_token_ids``), each window run as one prefill *through the cache under test*, so
  an INT8 cache quantizes every K/V the attention reads, exactly as it would during decoding.
* :func:`greedy_agreement`: on fixed chat prompts, how many greedy tokens a variant shares with the
  reference before the first divergence.

    python -m ch04_kvcache.quality --tokens 2048    # perplexity of the embedded model, fp32 cache
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ch04_kvcache.generate import generate
from ch04_kvcache.model import LlamaModel

AGREEMENT_PROMPTS = (
    "What is the capital of France?",
    "Name three primary colors.",
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about autumn.",
    "List three uses of a paperclip.",
    "What is 12 times 7?",
)

CacheFactory = Callable[[LlamaModel, int], object]  # (model, max_len) -> cache, or None for no cache


@dataclass
class Perplexity:
    ppl: float
    tokens_scored: int
    windows: int


@torch.inference_mode()
def perplexity(model: LlamaModel, token_ids: Sequence[int], window: int = 512,
               cache_factory: CacheFactory | None = None) -> Perplexity:
    """Perplexity of ``token_ids`` in non-overlapping windows; each window is one prefill through the cache."""
    if len(token_ids) < 2:
        raise ValueError("perplexity needs at least two tokens")
    nll, scored, windows = 0.0, 0, 0
    dev = model.device
    for start in range(0, len(token_ids) - 1, window):
        chunk = torch.tensor([list(token_ids[start: start + window])], device=dev)  # (1, T)
        if chunk.shape[1] < 2:
            break
        cache = cache_factory(model, chunk.shape[1]) if cache_factory else None
        logits = model(chunk, cache=cache)[0, :-1].float()  # (T-1, V)
        nll += F.cross_entropy(logits, chunk[0, 1:], reduction="sum").item()
        scored += chunk.shape[1] - 1
        windows += 1
    return Perplexity(math.exp(nll / scored), scored, windows)


@dataclass
class Agreement:
    mean_prefix_fraction: float  # mean over prompts of (common prefix length / tokens generated)
    identical: int  # prompts whose whole greedy output is identical
    prompts: int


def greedy_agreement(reference: Sequence[Sequence[int]], variant: Sequence[Sequence[int]]) -> Agreement:
    """Compare greedy outputs prompt by prompt: common prefix length and exact matches."""
    fractions, same = [], 0
    for ref, got in zip(reference, variant, strict=True):
        n = 0
        while n < min(len(ref), len(got)) and ref[n] == got[n]:
            n += 1
        fractions.append(n / max(len(ref), 1))
        same += list(ref) == list(got)
    return Agreement(sum(fractions) / len(fractions), same, len(fractions))


def greedy_outputs(model: LlamaModel, prompts: Sequence[list[int]], max_new_tokens: int,
                   cache: str = "contiguous") -> list[list[int]]:
    return [generate(model, p, max_new_tokens, cache=cache).token_ids for p in prompts]


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.cli_model import model_from_args
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.datasets import eval_token_ids
    from common.loader import load_tokenizer

    parser = make_parser("python -m ch04_kvcache.quality", __doc__)
    add_common_args(parser)
    parser.add_argument("--tokens", type=positive_int, default=4096, help="evaluation tokens")
    parser.add_argument("--window", type=positive_int, default=512, help="tokens per window")
    args = parser.parse_args(argv)
    with friendly_errors():
        model = model_from_args(args)
        ids = eval_token_ids(load_tokenizer(args.model), 1024 if args.smoke else args.tokens)
        res = perplexity(model, ids, args.window)
        print(f"perplexity {res.ppl:.3f} over {res.tokens_scored} tokens ({res.windows} windows of "
              f"<= {args.window})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
