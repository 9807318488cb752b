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
    raise NotImplementedError("exercise 7.2: measure each draft (see the module docstring)")


def choose(reports: Sequence[DraftReport]) -> str:
    raise NotImplementedError("exercise 7.2: pick the draft the formula prefers")
