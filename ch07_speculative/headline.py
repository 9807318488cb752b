"""Chapter 7's line in the guided tour (``make demo``): prompt lookup on a "repeat this paragraph" task.

Measured in the call on the embedded model, greedy, batch 1: tokens per target forward pass, identical
output to the target alone, and the wall-clock ratio (which on a CPU is held back by the cost of
verifying several tokens in one pass; see the chapter README).
"""

from __future__ import annotations

from common.report import Headline


def headline(smoke: bool = False) -> Headline:
    from ch04_kvcache.generate import generate
    from ch04_kvcache.model import LlamaModel
    from ch07_speculative.prompt_lookup import REWRITE_PROMPT, PromptLookupDrafter
    from ch07_speculative.speculative import speculative_generate
    from common.chat import chat_ids
    from common.loader import load_tokenizer

    target = LlamaModel.from_pretrained(None)
    ids = chat_ids(load_tokenizer(None), REWRITE_PROMPT)
    n = 8 if smoke else 32
    ref = generate(target, ids, n, cache="contiguous")
    base_s = ref.timings.prefill_s + ref.timings.decode_s
    res = speculative_generate(target, PromptLookupDrafter(), ids, n, gamma=8)
    tps, speed = res.stats.tokens_per_target_step, base_s / res.wall_s
    same = res.token_ids == ref.token_ids
    text = (f"Prompt lookup (no draft model) produced {tps:.1f} tokens per target forward pass while repeating a "
            f"paragraph, {'identical to' if same else 'DIFFERENT from'} the target alone; wall-clock "
            f"{speed:.2f}x on this CPU for {n} tokens.")
    return Headline("ch07", text, {"tokens_per_target_step": tps, "speedup": speed, "identical": same,
                                   "new_tokens": n})
