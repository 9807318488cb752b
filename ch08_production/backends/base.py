"""The one interface every serving backend implements (book 8.1, 8.9): messages and a Protocol.

The server never knows what generates the tokens. It turns an HTTP request into a
:class:`GenerationRequest`, iterates the backend's :meth:`Backend.stream` for :class:`StreamChunk`
messages, and reads :class:`BackendStats` for ``/metrics`` and admission control. Closing the stream
(``aclose()``, or cancelling the task that iterates it) must abort the request and free whatever it
held (KV blocks in the engine backend): that is how a client disconnect becomes an abort.

Backends: ``engine`` (ch05's continuous-batching engine, the default when it is installed),
``transformers`` (a real model, one sequence at a time) and ``vllm`` (a proxy to a vLLM server).
How to sample is ch04's :class:`~ch04_kvcache.sampling.SamplingParams`, the one every engine in the
repository uses (temperature, top-k/top-p/min-p, seed, penalties, logprobs, ``n``); all three backends
honour every field of it (``n > 1``: the engine forks one prefill copy-on-write, the transformers backend
runs the choices one after another, vLLM gets ``n``; choice i samples with seed + i). A chunk carries the
logprobs of its tokens when the request asked for them. A backend that applies
``SamplingParams.structured_outputs`` says so with ``supports_structured_outputs = True`` (engine, vllm);
for one without it the server answers 400 instead of returning unconstrained text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ch04_kvcache.sampling_params import SamplingParams, SamplingParamsError, TokenLogprob

__all__ = ["FINISH_REASONS", "Backend", "BackendError", "BackendStats", "BackendUnavailable", "GenerationRequest",
           "IncrementalDetokenizer", "SamplingParams", "SamplingParamsError", "StreamChunk", "TokenLogprob",
           "token_text"]
FINISH_REASONS = ("stop", "length", "abort", "content_filter")


class BackendError(RuntimeError):
    """The backend failed while serving a request (not the request's fault): a 5xx for the client."""


class BackendUnavailable(BackendError):
    """The backend is not ready (starting, failed, or shutting down): a 503 for the client."""


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """One validated request as the backend sees it: token ids already counted against the context."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    params: SamplingParams
    prompt_text: str | None = None
    traceparent: str | None = None  # W3C trace context, propagated to remote backends


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """New output of one choice since its previous chunk; its last chunk carries ``finish_reason``. With
    ``params.n > 1`` a stream interleaves the chunks of choices ``index`` 0..n-1 and ends when all finished."""

    token_ids: tuple[int, ...]
    text: str
    finish_reason: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None  # one per token in token_ids, when the request asked
    index: int = 0


@dataclass(frozen=True, slots=True)
class BackendStats:
    """A snapshot for ``/metrics`` and admission control. Block counts are 0 where not applicable."""

    num_running: int = 0
    num_waiting: int = 0
    kv_cache_usage: float = 0.0  # 0..1, as vllm:kv_cache_usage_perc
    num_used_blocks: int = 0
    num_total_blocks: int = 0
    num_preemptions: int = 0  # cumulative
    prefix_cache_queries: int = 0  # cumulative, tokens (vllm:prefix_cache_queries); 0 without a prefix cache
    prefix_cache_hits: int = 0  # cumulative, tokens (vllm:prefix_cache_hits)
    healthy: bool = True
    detail: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """What the server needs from a token generator."""

    name: str  # "engine" | "transformers" | "vllm" | ...
    model_name: str  # the id clients send as "model"
    max_model_len: int  # prompt + output tokens must fit
    tokenizer: Any  # a Hugging Face tokenizer: the server tokenizes, counts and applies chat templates

    async def start(self) -> None:
        """Load weights / connect. Raise on failure."""

    async def stop(self) -> None:
        """Release everything. Called once, after in-flight requests drained."""

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        """Generate; closing the iterator early aborts the request and frees its resources."""

    def stats(self) -> BackendStats:
        """Current load, cache usage and health (cheap; called on every scrape and admission)."""

    async def restart(self) -> None:
        """Try to recover after a failure (reload / reconnect). Raise if it cannot."""


def token_text(tokenizer: Any, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


class IncrementalDetokenizer:
    """Text deltas from a growing list of token ids, never emitting half a UTF-8 character.

    Decoding token by token is wrong for byte-level BPE (a character can span tokens, and spaces
    depend on neighbours), so we decode a short window and emit only the new, complete suffix.
    """

    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int] = ()) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.emitted = ""

    def push(self, new_ids: Sequence[int]) -> str:
        self.ids.extend(new_ids)
        text = token_text(self.tokenizer, self.ids)
        if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the next token
            return ""
        delta = text[len(self.emitted):] if text.startswith(self.emitted) else ""
        self.emitted = text if text.startswith(self.emitted) else self.emitted
        return delta

    def flush(self) -> str:
        text = token_text(self.tokenizer, self.ids)
        delta = text[len(self.emitted):] if text.startswith(self.emitted) else ""
        self.emitted = text
        return delta
