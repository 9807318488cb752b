"""Exercise 7.2, plausible but wrong: the measured acceptance rate is fed to the speedup formula as if it
were alpha (the per-token acceptance probability), which overstates a poor draft's speedup."""

from ch07_speculative import theory
from ch07_speculative.drafts import step_cost
from ch07_speculative.solutions.ex7_2_compare_drafts import DraftReport, choose  # noqa: F401
from ch07_speculative.speculative import ModelDrafter, speculative_generate


def compare_drafts(target, drafts, prompt_ids, max_new_tokens=16, gamma=4):
    base = step_cost(target, context=len(prompt_ids), repeats=3)
    reports = []
    for name, draft in drafts.items():
        st = speculative_generate(target, ModelDrafter(draft), prompt_ids, max_new_tokens, gamma,
                                  eos_token_id=None).stats
        c = step_cost(draft, context=len(prompt_ids), repeats=3) / base
        reports.append(DraftReport(name, st.acceptance_rate, st.tokens_per_target_step, c,
                                   theory.speedup(st.acceptance_rate, gamma, c)))
    return reports
