"""Exercise 7.2, a different correct answer: the cost ratio from best-of-5 timings of a decode step,
reports built with a comprehension, the choice by sorting."""

from dataclasses import dataclass

from ch07_speculative import theory
from ch07_speculative.drafts import step_cost
from ch07_speculative.speculative import ModelDrafter, speculative_generate


@dataclass(frozen=True)
class DraftReport:
    name: str
    acceptance_rate: float
    tokens_per_target_step: float
    c: float
    predicted_speedup: float


def _report(name, target, draft, prompt_ids, n, gamma, target_cost):
    st = speculative_generate(target, ModelDrafter(draft), prompt_ids, n, gamma, eos_token_id=None).stats
    rate = st.acceptance_rate if st.drafted else 0.0
    c = min(step_cost(draft, context=len(prompt_ids), repeats=1) for _ in range(5)) / target_cost
    return DraftReport(name, rate, st.tokens_per_target_step, c,
                       theory.speedup(theory.alpha_from_acceptance_rate(rate, gamma), gamma, c))


def compare_drafts(target, drafts, prompt_ids, max_new_tokens=16, gamma=4):
    target_cost = min(step_cost(target, context=len(prompt_ids), repeats=1) for _ in range(5))
    return [_report(n, target, d, prompt_ids, max_new_tokens, gamma, target_cost) for n, d in drafts.items()]


def choose(reports):
    return sorted(reports, key=lambda r: -r.predicted_speedup)[0].name
