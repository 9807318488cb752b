"""Exercise 7.2 (book 7.4, 7.4.4): compare draft models by acceptance rate and cost, then choose by formula.

Task: implement :func:`compare_drafts`. For each named draft model, run
``ch07_speculative.speculative.speculative_generate(target, ModelDrafter(draft), prompt_ids, n, gamma)``
(greedy), and measure the cost ratio ``c = step_cost(draft) / step_cost(target)`` with
``ch07_speculative.drafts.step_cost``. Return one :class:`DraftReport` per draft, in the given order, with
the measured acceptance rate and tokens per target step, ``c``, and the speedup the formula predicts:
``theory.speedup(theory.alpha_from_acceptance_rate(rate, gamma), gamma, c)``. Then
:func:`choose` returns the name with the highest predicted speedup. Grade with ``python -m common.grade 7.2``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ch04_kvcache.model import LlamaModel


@dataclass
class DraftReport:
    name: str
    acceptance_rate: float
    tokens_per_target_step: float
    c: float
    predicted_speedup: float


def compare_drafts(target: LlamaModel, drafts: Mapping[str, LlamaModel], prompt_ids: Sequence[int],
                   max_new_tokens: int = 16, gamma: int = 4) -> list[DraftReport]:
    from ch07_speculative import theory
    from ch07_speculative.drafts import step_cost
    from ch07_speculative.speculative import ModelDrafter, speculative_generate

    t_target = step_cost(target, context=len(prompt_ids), repeats=3)
    out = []
    for name, draft in drafts.items():
        res = speculative_generate(target, ModelDrafter(draft), prompt_ids, max_new_tokens, gamma,
                                   eos_token_id=None)
        rate = res.stats.acceptance_rate if res.stats.drafted else 0.0
        c = step_cost(draft, context=len(prompt_ids), repeats=3) / t_target
        alpha = theory.alpha_from_acceptance_rate(rate, gamma)
        out.append(DraftReport(name, rate, res.stats.tokens_per_target_step, c, theory.speedup(alpha, gamma, c)))
    return out


def choose(reports: Sequence[DraftReport]) -> str:
    return max(reports, key=lambda r: r.predicted_speedup).name
