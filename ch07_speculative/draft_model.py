"""The distilled draft's architecture (book 7.4.3): copied target blocks and a frequent-token head.

* :class:`SubVocabHead`: an LM head over a token subset that still returns full-vocabulary logits
  (-inf elsewhere), so the draft plugs into ``speculative.ModelDrafter`` unchanged and speculative
  sampling stays exact (the target's residual step produces the tokens the draft cannot).
* :func:`frequent_tokens`: which tokens the head keeps (FR-Spec's idea: the most frequent ones).
* :func:`build_draft`: a ``LlamaModel`` from copies of some of the target's blocks, the shared embedding
  and such a head. ``distill.py`` trains it.
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ch04_kvcache.model import LlamaModel


class SubVocabHead(nn.Module):
    """An LM head over a token subset: (..., hidden) -> (..., V) logits, -inf outside the subset.

    ``full = False`` (training) returns the (..., N) subset logits instead, so the loss never touches V.
    """

    def __init__(self, weight: torch.Tensor, token_ids: torch.Tensor, vocab_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)  # (N, hidden)
        self.register_buffer("token_ids", token_ids.long())  # (N,) full-vocabulary id of each row
        self.vocab_size = vocab_size
        self.full = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sub = F.linear(x, self.weight)  # (..., N)
        if not self.full:
            return sub
        out = sub.new_full((*sub.shape[:-1], self.vocab_size), float("-inf"))
        return out.index_copy_(out.dim() - 1, self.token_ids, sub)  # (..., V)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]} of {self.vocab_size} tokens"


def frequent_tokens(tokenizer, n: int, always: Sequence[int] = (), own_text: Sequence[Sequence[int]] = (),
                    docs: int = 3000, seed: int = 0) -> torch.Tensor:
    """The ``n`` most frequent token ids: ``always`` (EOS...) first, then by count over ``docs`` ShareGPT
    conversations plus the target's own answers ``own_text`` (each of their tokens counts 10 times)."""
    from common.datasets import workload_pool

    pool = workload_pool()
    picked = random.Random(seed).sample(range(len(pool)), min(docs, len(pool)))
    counts: Counter[int] = Counter()
    for i in picked:
        for text in (pool[i].prompt, pool[i].completion):
            counts.update(tokenizer(text, add_special_tokens=False)["input_ids"])
    for ids in own_text:
        for t in ids:
            counts[t] += 10
    keep = list(dict.fromkeys([*always, *(t for t, _ in counts.most_common(n))]))[:n]
    return torch.tensor(sorted(keep))


def build_draft(target: LlamaModel, layers: Sequence[int], token_ids: torch.Tensor) -> LlamaModel:
    """A new model from copies of the target's ``layers`` blocks and norm, the shared embedding, a subset head."""
    total = target.config.num_layers
    picked = [i % total for i in layers]
    if not picked or any(not -total <= i < total for i in layers) or len(set(picked)) != len(picked):
        raise ValueError(f"draft layers must be distinct block indices in [-{total}, {total}), got {list(layers)}")
    cfg = dataclasses.replace(target.config, num_layers=len(picked))
    with torch.device("meta"):
        draft = LlamaModel(cfg)
    draft.embed_tokens = target.embed_tokens  # shared and frozen
    draft.rotary = target.rotary
    draft.layers = nn.ModuleList(copy.deepcopy(target.layers[i]) for i in picked)
    for new_idx, block in enumerate(draft.layers):
        block.self_attn.layer_idx = new_idx  # the draft's own KV cache has len(picked) layers
    draft.norm = copy.deepcopy(target.norm)
    rows = target.lm_head.weight.detach()[token_ids].clone()  # (N, hidden)
    draft.lm_head = SubVocabHead(rows, token_ids, target.config.vocab_size)
    return draft.eval()
