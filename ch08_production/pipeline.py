"""One request through a backend: stop strings, output filter, deadline, timings (book 8.4.1, 8.9).

:func:`run_generation` wraps a backend's token stream and yields text events. It is the single place
where a request ends, whatever the reason, and it always closes the backend stream in ``finally``: a
client disconnect (the task is cancelled), a timeout, a stop string and a content-filter hit all
abort the backend request and free its KV blocks the same way. With ``n > 1`` every choice has its own
stop matcher and filter check; a choice that ends here (a stop string) is finished for the client and
its later chunks are dropped, and the request ends when every choice has.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from ch08_production.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    GenerationRequest,
    TokenLogprob,
)
from ch08_production.protocol import APIError
from ch08_production.security import ContentFilter


@dataclass
class RequestRecord:
    """What happened to one request: filled in as it runs, read by metrics and the access log."""

    request_id: str
    prompt_tokens: int
    t_start: float = field(default_factory=time.perf_counter)
    t_first: float | None = None
    t_last: float | None = None
    itls: list[float] = field(default_factory=list)  # one per output token after the first
    completion_tokens: int = 0
    finish_reason: str | None = None
    text: str = ""

    def tokens_arrived(self, n: int, timed: bool = True) -> None:
        """Count ``n`` tokens; ``timed=False`` (the other choices of an n > 1 request) skips the timings,
        which follow one choice so a step's n chunks do not look like n tokens apart."""
        now = time.perf_counter()
        if n <= 0:
            return
        if not timed:
            self.completion_tokens += n
            return
        if self.t_first is None:
            self.t_first = now
            n_gaps = n - 1
        else:
            n_gaps = n
        if n_gaps > 0 and self.t_last is not None:
            self.itls.extend([(now - self.t_last) / n_gaps] * n_gaps)
        self.t_last = now
        self.completion_tokens += n

    @property
    def ttft_s(self) -> float | None:
        return None if self.t_first is None else self.t_first - self.t_start

    @property
    def e2e_s(self) -> float:
        return (self.t_last or time.perf_counter()) - self.t_start


@dataclass(frozen=True, slots=True)
class TextEvent:
    text: str
    finish_reason: str | None = None
    logprobs: tuple[TokenLogprob, ...] = ()  # of the tokens that arrived with this event (when asked for)
    index: int = 0                           # the choice (n > 1)


class _StopMatcher:
    """Holds back just enough text to catch a stop string split across chunks."""

    def __init__(self, stops: tuple[str, ...], include_stop: bool = False) -> None:
        self.stops = stops
        self.include_stop = include_stop  # vLLM's include_stop_str_in_output
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """(text safe to emit, stopped?)."""
        self.pending += text
        if not self.stops:
            out, self.pending = self.pending, ""
            return out, False
        hits = [(i, len(s)) for i, s in ((self.pending.find(s), s) for s in self.stops) if i >= 0]
        if hits:
            at, n = min(hits)
            out, self.pending = self.pending[:at + n if self.include_stop else at], ""
            return out, True
        cut = max(0, len(self.pending) - self.hold)
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


async def run_generation(backend: Backend, request: GenerationRequest, record: RequestRecord, *,
                         timeout_s: float, output_filter: ContentFilter | None = None,
                         on_failure: Callable[[Backend, BaseException], None] | None = None,
                         ) -> AsyncIterator[TextEvent]:
    """Yield text events until the request finishes; raise :class:`APIError` for failures."""
    deadline = time.perf_counter() + timeout_s
    n = request.params.n
    stops = [_StopMatcher(request.params.stop, request.params.include_stop_str_in_output) for _ in range(n)]
    texts, reasons = [""] * n, [None] * n
    stream = backend.stream(request)
    try:
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise APIError(504, f"the request did not finish within {timeout_s:g} s; lower max_tokens or "
                                    "retry later", "timeout_error", code="timeout")
            try:
                chunk = await asyncio.wait_for(stream.__anext__(), remaining)
            except StopAsyncIteration:
                raise BackendError("the backend ended the stream without a finish reason") from None
            except asyncio.TimeoutError:
                continue  # the deadline check above raises
            i = chunk.index
            if not 0 <= i < n or reasons[i] is not None:
                continue  # a choice that already ended here (a stop string): the backend's tail is dropped
            record.tokens_arrived(len(chunk.token_ids), timed=i == reasons.index(None))
            text, stopped = stops[i].feed(chunk.text)
            finish = "stop" if stopped else chunk.finish_reason
            if finish and not stopped:
                text += stops[i].flush()
            lps = chunk.logprobs or ()
            if output_filter is not None and text and not output_filter.check(texts[i] + text).allowed:
                text, finish, lps = "", "content_filter", ()
            texts[i] += text
            if i == 0:
                record.text = texts[0]
            if finish:
                reasons[i] = finish
                if None not in reasons:
                    record.finish_reason = reasons[0]
                yield TextEvent(text, finish, lps, i)
                if record.finish_reason is not None:
                    return
                continue
            yield TextEvent(text, None, lps, i)  # one event per engine step, even when the text is held back (as vLLM)
    except APIError:
        raise
    except BackendUnavailable as exc:
        raise APIError(503, f"the model backend is not available ({exc}); retry shortly",
                       "service_unavailable_error", code="backend_unavailable") from exc
    except Exception as exc:  # noqa: BLE001 - a backend failure must never leak a traceback to the client
        if on_failure is not None:
            on_failure(backend, exc)
        raise APIError(500, "the model backend failed while generating this request; it is being "
                            "restarted, retry shortly", "server_error", code="backend_error") from exc
    finally:
        with contextlib.suppress(Exception):
            await stream.aclose()  # abort in the backend: frees the request's KV blocks
