"""What a scheduler can ever run (book 5.4.1): the checks a request passes before it takes anything.

A request whose prompt is past ``max_model_len``, whose worst case (prompt + ``max_tokens``) needs more KV
blocks than the whole cache, whose ``n`` choices need more seats than the policy ever runs at once, or
whose prompt cannot be prefilled without chunking, would wait forever or fail mid-run. :func:`check_admissible`
refuses it at once with :class:`RequestRejected`, whose message says what to change; :func:`max_choices` is
the largest ``n`` that passes, which a server turns into a 400 before it sends anything to the engine.
No torch here, like the scheduler that calls it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ch05_scheduling.sequence_group import worst_case_blocks
from common.errors import UsageError

if TYPE_CHECKING:
    from ch05_scheduling.policies import Policy
    from ch05_scheduling.scheduler import SchedulerConfig
    from ch05_scheduling.sequence import Sequence
    from ch05_scheduling.sequence_group import SequenceGroup


class RequestRejected(UsageError):
    """A request this scheduler can never run as asked: a prompt longer than ``max_model_len``, more KV than
    the whole cache, more choices than seats. Raised by :meth:`Scheduler.add` (so by ``LLMEngine.add_request``)
    before anything is allocated; the message says what to change. A server answers it with an error for
    that one request and keeps serving."""


def check_admissible(cfg: SchedulerConfig, policy: Policy, seq: Sequence, group: SequenceGroup | None) -> None:
    """Raise :class:`RequestRejected` if ``seq`` (the parent of ``group`` for ``n > 1``) can never run."""
    if seq.num_prompt_tokens >= cfg.max_model_len:
        raise RequestRejected(f"prompt of {seq.num_prompt_tokens} tokens does not fit max_model_len="
                              f"{cfg.max_model_len}; shorten it or raise max_model_len")
    worst = min(seq.num_prompt_tokens + seq.params.max_tokens, cfg.max_model_len)
    if group is not None:
        cap = policy.max_running(cfg.max_num_seqs)
        if group.n > cap:
            raise RequestRejected(f"n={group.n} needs {group.n} sequences running at once but this scheduler "
                                  f"runs at most {cap}; lower n or raise max_num_seqs")
        blocks = group.max_blocks(cfg.block_size, cfg.max_model_len)
        if blocks > cfg.num_blocks:
            raise RequestRejected(f"request {seq.seq_id} with n={group.n} may need {blocks} KV blocks (prompt "
                                  f"shared) but the cache holds {cfg.num_blocks}; lower n or max_tokens")
    if -(-worst // cfg.block_size) > cfg.num_blocks:
        raise RequestRejected(f"request {seq.seq_id} may need {worst} tokens of KV cache but it holds only "
                              f"{cfg.capacity_tokens}; lower max_tokens or give the cache more blocks")
    if not cfg.enable_chunked_prefill and worst > cfg.max_num_batched_tokens:
        raise RequestRejected(f"without chunked prefill a prompt (plus recomputed outputs) must fit "
                              f"max_num_batched_tokens={cfg.max_num_batched_tokens}; request {seq.seq_id} may "
                              f"need {worst}; enable chunked prefill or raise the budget")


def max_choices(cfg: SchedulerConfig, policy: Policy, prompt_len: int, max_tokens: int) -> int:
    """The largest ``n`` that :func:`check_admissible` accepts for a request of this shape: all ``n`` choices
    run at once (the policy's seat cap) and their worst-case blocks (the prompt's full blocks once, the rest
    per choice, :func:`~ch05_scheduling.sequence_group.worst_case_blocks`) fit the cache."""
    shared, per_choice = worst_case_blocks(prompt_len, max_tokens, cfg.block_size, cfg.max_model_len)
    return max(1, min(policy.max_running(cfg.max_num_seqs), (cfg.num_blocks - shared) // max(1, per_choice)))
