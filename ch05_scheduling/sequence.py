"""Per-request state of the engine: status and the token bookkeeping (5.4.1).

Book sections: 5.4.1 请求生命周期管理 (a request's life: WAITING -> RUNNING -> [PREEMPTED -> WAITING
-> RUNNING ...] -> FINISHED). Nothing here runs torch: the scheduler, the simulator and the engine
share these objects. How a request samples is ch04's :class:`~ch04_kvcache.sampling.SamplingParams`
(re-exported here): one frozen dataclass, validated in one place, for ch04, ch05 and ch08.

The one number that drives everything is ``num_computed_tokens``: how many of the sequence's tokens
(prompt + generated) already have their K/V in the cache. Each step the scheduler gives a sequence
``num_new_tokens`` more, so a whole prompt, a prefill chunk and a decode step are the same operation
(the unified view of vLLM v1). Preemption by recompute sets it back to 0; resumption prefills the prompt
*and* the tokens generated so far.

Run ``python -m ch05_scheduling.sequence`` to print the life of one toy request.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ch04_kvcache.sampling_params import SamplingParams, TokenLogprob
from common.errors import UsageError

__all__ = ["FinishReason", "SamplingParams", "Sequence", "SequenceStatus", "TokenLogprob"]


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class FinishReason(enum.Enum):
    STOP = "stop"        # EOS or a stop string
    LENGTH = "length"    # max_tokens reached
    ABORT = "abort"      # the client went away (or the engine was told to drop it)


@dataclass(slots=True)
class Sequence:
    """One request inside the engine (or the simulator).

    ``tenant`` groups requests for fair-share scheduling; ``priority`` follows vLLM (lower = sooner);
    ``predicted_output_len`` is what a shortest-job-first policy sorts on (an oracle knows the truth, a
    predictor guesses); the ``*_time`` fields are filled by whoever owns the clock (wall or simulated).
    """

    seq_id: int
    prompt_token_ids: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    arrival_time: float = 0.0
    priority: int = 0
    tenant: str = "default"
    predicted_output_len: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    output_token_ids: list[int] = field(default_factory=list)
    output_logprobs: list[TokenLogprob] = field(default_factory=list)  # one per output token, if asked for
    status: SequenceStatus = SequenceStatus.WAITING
    finish_reason: FinishReason | None = None
    num_computed_tokens: int = 0
    num_cached_tokens: int = 0       # prompt tokens found in the prefix cache at the last admission
    num_preemptions: int = 0
    first_scheduled_time: float | None = None
    first_token_time: float | None = None
    finish_time: float | None = None
    token_times: list[float] = field(default_factory=list)
    output_text: str = ""

    def __post_init__(self) -> None:
        if not self.prompt_token_ids:
            raise UsageError(f"request {self.seq_id} has an empty prompt; give it at least one token")

    # ------------------------------------------------------------------ token bookkeeping
    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def all_token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    def token_at(self, i: int) -> int:
        p = len(self.prompt_token_ids)
        return self.prompt_token_ids[i] if i < p else self.output_token_ids[i - p]

    @property
    def num_uncomputed_tokens(self) -> int:
        """Tokens still to run through the model before the next token can be sampled."""
        return self.num_tokens - self.num_computed_tokens

    @property
    def in_prefill(self) -> bool:
        """True while more than one token is pending (a prompt, a chunk, or a resumption's recompute)."""
        return self.num_uncomputed_tokens > 1

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    @property
    def expected_output_len(self) -> int:
        """What SJF sorts on: the prediction when there is one, else the worst case (max_tokens)."""
        if self.predicted_output_len is not None:
            return self.predicted_output_len
        return self.params.max_tokens

    @property
    def remaining_output_len(self) -> int:
        return max(self.expected_output_len - self.num_output_tokens, 0)

    # ------------------------------------------------------------------ life-cycle
    def append_token(self, token_id: int, now: float, logprob: TokenLogprob | None = None) -> FinishReason | None:
        """Record a sampled token; return why the sequence must stop (EOS or max_tokens), if it must."""
        self.output_token_ids.append(token_id)
        if logprob is not None:
            self.output_logprobs.append(logprob)
        self.token_times.append(now)
        if self.first_token_time is None:
            self.first_token_time = now
        if not self.params.ignore_eos and token_id in self.eos_token_ids:
            return FinishReason.STOP
        if self.num_output_tokens >= self.params.max_tokens:
            return FinishReason.LENGTH
        return None

    def finish(self, reason: FinishReason, now: float) -> None:
        self.status = SequenceStatus.FINISHED
        self.finish_reason = reason
        self.finish_time = now

    def reset_for_recompute(self) -> None:
        """Preemption by recompute: the K/V are dropped, the tokens kept; it will prefill them all again."""
        self.status = SequenceStatus.WAITING
        self.num_computed_tokens = 0
        self.num_preemptions += 1


def main(argv: list[str] | None = None) -> int:
    from common.cli import make_parser

    make_parser("python -m ch05_scheduling.sequence", __doc__).parse_args(argv)
    seq = Sequence(0, [1, 2, 3, 4], SamplingParams(max_tokens=3))
    print(f"arrives: status={seq.status.value}, computed={seq.num_computed_tokens}/{seq.num_tokens}")
    seq.status = SequenceStatus.RUNNING
    seq.num_computed_tokens = 4
    seq.append_token(7, 1.0)
    print(f"prefill done, first token 7: computed={seq.num_computed_tokens}/{seq.num_tokens}")
    seq.reset_for_recompute()
    print(f"preempted (recompute): status={seq.status.value}, computed={seq.num_computed_tokens}/{seq.num_tokens}")
    seq.status = SequenceStatus.RUNNING
    seq.num_computed_tokens = seq.num_tokens
    reason = seq.append_token(8, 2.0) or seq.append_token(9, 3.0)
    seq.finish(reason or FinishReason.LENGTH, 3.0)
    print(f"finished: reason={seq.finish_reason.value}, output={seq.output_token_ids}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
