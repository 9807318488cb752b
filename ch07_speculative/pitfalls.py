"""Chapter 7's 常见误区 (common pitfalls), each measured with this chapter's code on the embedded model.

Greedy, batch 1, ch04's ``LlamaModel`` as the target; "plain" is ``ch04_kvcache.generate`` with the
contiguous cache. Walls are the best of ``repeats`` runs, methods interleaved (``common.bench.interleaved``).

1. "Any draft makes decoding faster": a self-draft of the target's first 4 blocks
   (``drafts.truncated_draft``, ``SharedCacheDrafter``) is cheap but almost never agrees with the
   target, so each round pays ``gamma`` draft steps and a ``gamma + 1``-token verification for about one
   token. Besides the wall speed-up, ``speedup_bound`` is the most a round could give at that
   acceptance even if verifying cost one step (``tokens per target step / (1 + gamma x c)``, ``c`` =
   the draft's parameters over the target's): below 1, whatever the machine.
2. "Prompt lookup is free, so it helps every prompt": ``PromptLookupDrafter`` on a free-form chat
   prompt (nothing in the context to copy) vs the chapter's repeat-this-paragraph prompt.

    python -m ch07_speculative.pitfalls --smoke
    python -m ch07_speculative.pitfalls
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from ch04_kvcache.generate import generate
from ch04_kvcache.model import LlamaModel
from ch07_speculative.drafts import truncated_draft
from ch07_speculative.prompt_lookup import REWRITE_PROMPT, PromptLookupDrafter
from ch07_speculative.speculative import SharedCacheDrafter, speculative_generate
from common.bench import interleaved
from common.chat import chat_ids
from common.loader import load_tokenizer
from common.pitfalls import Pitfall, pitfalls_main

CH = "ch07"
FREE_PROMPT = "Write a short story about a dragon who learns to cook."
DRAFT_LAYERS = 4
GAMMA = 4  # the self-draft's tokens per round (--smoke: 2)


def _params(model: LlamaModel) -> int:
    return sum(p.numel() for p in model.parameters())  # shared (tied) tensors once


def best_walls(runs: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict[str, object]]:
    """Best wall seconds of each run over ``repeats`` interleaved rounds, and each run's last result."""
    walls: dict[str, float] = {}
    results: dict[str, object] = {}
    for name in interleaved(list(runs), repeats):
        t0 = time.perf_counter()
        results[name] = runs[name]()
        walls[name] = min(walls.get(name, float("inf")), time.perf_counter() - t0)
    return walls, results


def run(smoke: bool, model: LlamaModel | None = None, tokenizer=None) -> list[Pitfall]:
    target = model if model is not None else LlamaModel.from_pretrained(None)
    tok = tokenizer if tokenizer is not None else load_tokenizer(None)
    free, rewrite = chat_ids(tok, FREE_PROMPT), chat_ids(tok, REWRITE_PROMPT)
    n, repeats, gamma, lookup_gamma = (4, 1, 2, 4) if smoke else (48, 3, GAMMA, 8)
    draft = truncated_draft(target, DRAFT_LAYERS)
    generate(target, free, 2)  # warm-up
    runs = {
        "plain free": lambda: generate(target, free, n, eos_token_id=-1),
        "self-draft free": lambda: speculative_generate(target, SharedCacheDrafter(draft), free, n, gamma),
        "lookup free": lambda: speculative_generate(target, PromptLookupDrafter(), free, n, lookup_gamma),
        "plain rewrite": lambda: generate(target, rewrite, n, eos_token_id=-1),
        "lookup rewrite": lambda: speculative_generate(target, PromptLookupDrafter(), rewrite, n, lookup_gamma),
    }
    walls, res = best_walls(runs, repeats)
    sd = res["self-draft free"].stats
    c = _params(draft) / _params(target)
    bound = sd.tokens_per_target_step / (1 + gamma * c)
    speed_sd = walls["plain free"] / walls["self-draft free"]
    poor = Pitfall(
        CH, "any draft makes decoding faster",
        f"a cheap draft (the target's first {DRAFT_LAYERS} of {target.config.num_layers} blocks) can only help",
        {"new_tokens": n, "gamma": gamma, "acceptance_rate": sd.acceptance_rate,
         "tokens_per_target_step": sd.tokens_per_target_step, "c_params": c, "speedup_bound": bound,
         "speedup": speed_sd},
        f"the draft's tokens were accepted {sd.acceptance_rate:.0%} of the time, {sd.tokens_per_target_step:.2f} "
        f"tokens per target pass: even with a free verification the round could give at most {bound:.2f}x; "
        f"measured {speed_sd:.2f}x (below 1 = slower than not speculating)")
    lf, lr = res["lookup free"].stats, res["lookup rewrite"].stats
    speed_free = walls["plain free"] / walls["lookup free"]
    speed_rw = walls["plain rewrite"] / walls["lookup rewrite"]
    lookup = Pitfall(
        CH, "prompt lookup helps every prompt",
        "copying n-grams from the prompt costs nothing, so it is always worth turning on",
        {"gamma": lookup_gamma, "acceptance_free": lf.acceptance_rate if lf.drafted else 0.0,
         "drafted_free": lf.drafted, "tokens_per_step_free": lf.tokens_per_target_step,
         "speedup_free": speed_free, "acceptance_rewrite": lr.acceptance_rate if lr.drafted else 0.0,
         "tokens_per_step_rewrite": lr.tokens_per_target_step, "speedup_rewrite": speed_rw},
        f"on a free-form prompt {lf.drafted} copied tokens were verified and "
        f"{(lf.acceptance_rate if lf.drafted else 0.0):.0%} accepted, {speed_free:.2f}x plain decoding "
        f"(every failed guess makes the target's pass longer); on the repeat-this-paragraph prompt "
        f"{lr.acceptance_rate:.0%} accepted, {lr.tokens_per_target_step:.1f} tokens per pass, {speed_rw:.2f}x")
    return [poor, lookup]


def main(argv: list[str] | None = None) -> int:
    return pitfalls_main("python -m ch07_speculative.pitfalls", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
