"""What a request asks of the sampler: :class:`SamplingParams` (validated once), :class:`TokenLogprob`, and
:func:`choice_params` for the choices of an ``n > 1`` request.

These are plain dataclasses with no torch in them, so the schedulers (ch05) and the server's request
parsing (ch08) can import them without loading torch; the sampler that reads them is ``sampling.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ch04_kvcache.structured_output import StructuredOutput
from common.errors import UsageError

MAX_LOGPROBS = 20  # alternatives per token, as vLLM's default max_logprobs and OpenAI's top_logprobs limit


class SamplingParamsError(UsageError):
    """A sampling parameter out of range; ``field`` names it (the server turns it into a 400 with that param)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to sample one request (names and meanings follow vLLM's ``SamplingParams``).

    ``temperature == 0`` is greedy (the default here, unlike vLLM's 1.0: the book's runs are greedy so
    caches and engines can be compared token for token). ``top_k`` 0 or -1, ``top_p == 1`` and
    ``min_p == 0`` disable those filters. ``seed`` makes one request's draws reproducible whatever it is
    batched with. ``stop`` strings end the output; the stop string itself is returned only with
    ``include_stop_str_in_output``. ``ignore_eos`` keeps generating past EOS up to ``max_tokens``.
    ``logprobs``: None = no logprobs; k >= 0 = the sampled token's logprob plus the k most likely
    alternatives at each step. ``n``: completions of the one prompt (parallel sampling, book 4.4.3); ch05's
    engine prefills the prompt once and forks its KV blocks copy-on-write. Choice ``i`` samples with
    ``seed + i`` when a seed is given (see :func:`choice_params`); one sequence (ch04's ``generate``) needs
    ``n == 1``.
    ``structured_outputs`` (a :class:`StructuredOutput`: JSON object or schema,
    regex, choice, grammar) constrains the output; ch05's engine masks the logits with it
    (``ch05_scheduling/structured.py``), the samplers below never look at it.
    """

    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logprobs: int | None = None
    include_stop_str_in_output: bool = False
    n: int = 1
    structured_outputs: StructuredOutput | None = None

    def __post_init__(self) -> None:
        def bad(field: str, message: str) -> None:
            raise SamplingParamsError(field, f"{message}, got {getattr(self, field)!r}")

        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        object.__setattr__(self, "stop", tuple(s for s in self.stop if s))
        if self.top_k == -1:  # vLLM's spelling of "off"
            object.__setattr__(self, "top_k", 0)
        for name in ("temperature", "top_p", "min_p", "presence_penalty", "frequency_penalty",
                     "repetition_penalty"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                bad(name, "must be a finite number")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            bad("max_tokens", "must be >= 1")
        if self.temperature < 0:
            bad("temperature", "must be >= 0 (0 = greedy)")
        if not 0.0 < self.top_p <= 1.0:
            bad("top_p", "must be in (0, 1]")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            bad("top_k", "must be >= 0 (0 or -1 = off)")
        if not 0.0 <= self.min_p <= 1.0:
            bad("min_p", "must be in [0, 1]")
        if not -2.0 <= self.presence_penalty <= 2.0:
            bad("presence_penalty", "must be in [-2, 2]")
        if not -2.0 <= self.frequency_penalty <= 2.0:
            bad("frequency_penalty", "must be in [-2, 2]")
        if not 0.0 < self.repetition_penalty <= 2.0:
            bad("repetition_penalty", "must be in (0, 2] (1 = off)")
        if self.logprobs is not None and (not isinstance(self.logprobs, int)
                                          or not 0 <= self.logprobs <= MAX_LOGPROBS):
            bad("logprobs", f"must be None or 0..{MAX_LOGPROBS}")
        if self.seed is not None and not isinstance(self.seed, int):
            bad("seed", "must be an integer or None")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            bad("n", "must be an integer >= 1")
        if self.structured_outputs is not None and not isinstance(self.structured_outputs, StructuredOutput):
            bad("structured_outputs", "must be a StructuredOutput or None")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def has_penalties(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty or self.repetition_penalty != 1.0)


def choice_params(params: SamplingParams, index: int) -> SamplingParams:
    """The parameters choice ``index`` of an ``n > 1`` request samples with: ``n = 1`` and, when the request
    has a seed, ``seed + index``. So ``n = 4, seed = s`` draws exactly what four requests with seeds
    ``s, s+1, s+2, s+3`` draw. vLLM V1 uses the same rule (``ParentRequest`` gives child i ``seed + i``),
    but its sampler draws differently, so the tokens are not vLLM's; vLLM V0 drew all of a group's
    choices from one generator, so there choice i was not the request with seed + i."""
    if not 0 <= index < params.n:
        raise ValueError(f"choice index {index} is outside 0..{params.n - 1}")
    seed = None if params.seed is None else params.seed + index
    return replace(params, n=1, seed=seed)


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One output position: the sampled token, its logprob and rank (1 = most likely) under the raw model
    output, and the ``k`` most likely tokens there as ``(token_id, logprob)``, best first."""

    token_id: int
    logprob: float
    rank: int
    top: tuple[tuple[int, float], ...] = ()
