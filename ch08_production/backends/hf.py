"""The ``transformers`` backend: a real model, one sequence at a time, off the event loop (book 8.1).

It is the simplest correct backend and the baseline the engine backend is measured against: requests
queue (``num_waiting``) and run one by one on a dedicated worker thread, token by token with the
model's own KV cache, so the event loop stays free to accept connections and stream bytes. Tokens are
picked by ch04's :func:`~ch04_kvcache.sampling.sample_next`, the sampler of every engine here, so
penalties, min_p, top_k and logprobs mean the same as on the engine backend. Each token (with its
logprobs) is handed to the request's ``asyncio.Queue`` with ``call_soon_threadsafe``; closing the stream
sets an abort flag the worker checks every step. ``n > 1`` runs the choices one after another (choice i
with seed + i, the engine's rule), prefilling the prompt for each: this backend shares nothing, the
engine backend forks one prefill.

Run it behind the server: ``python -m ch08_production.server --backend transformers``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from ch04_kvcache.sampling import choice_params, sample_next
from ch08_production.backends.base import (
    BackendError,
    BackendStats,
    BackendUnavailable,
    GenerationRequest,
    IncrementalDetokenizer,
    SamplingParams,
    StreamChunk,
)


@dataclass
class _Job:
    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    abort: threading.Event = field(default_factory=threading.Event)


def _out_cache(out: Any) -> Any:
    # transformers >= 5.2x names it ``cache``; older releases ``past_key_values``.
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), model.config, tokenizer):
        eos = getattr(src, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        elif isinstance(eos, (list, tuple)):
            ids.update(int(e) for e in eos)
    return ids


class TransformersBackend:
    """``transformers`` causal LM served one request at a time on a worker thread."""

    name = "transformers"
    supports_structured_outputs = False  # generate() samples without a grammar: the server answers 400

    def __init__(self, model_path: str, model_name: str | None = None, max_model_len: int | None = None,
                 dtype: torch.dtype = torch.float32, load_format: str = "auto") -> None:
        self.model_path = model_path
        self.model_name = model_name or model_path
        self._max_len_override = max_model_len
        self.max_model_len = max_model_len or 2048
        self.dtype = dtype
        self.load_format = load_format
        self.model: Any = None
        self.tokenizer: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._waiting = 0
        self._running = 0
        self._healthy = False
        self._eos: set[int] = set()
        self._lock = threading.Lock()
        self._cache_kw = "past_key_values"

    async def start(self) -> None:
        from common.loader import load_hf_model, load_tokenizer

        def load() -> None:
            self.tokenizer = load_tokenizer(self.model_path)
            self.model = load_hf_model(self.model_path, dtype=self.dtype, load_format=self.load_format)

        await asyncio.to_thread(load)
        ctx = int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)
        self.max_model_len = min(self._max_len_override or ctx, ctx)
        self._eos = _eos_ids(self.model, self.tokenizer)
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-backend")
        self._healthy = True

    async def stop(self) -> None:
        self._healthy = False
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def stats(self) -> BackendStats:
        return BackendStats(num_running=self._running, num_waiting=self._waiting, healthy=self._healthy)

    def _run(self, job: _Job) -> None:
        """Worker thread: the whole generation of one request."""

        def put(item: Any) -> None:
            job.loop.call_soon_threadsafe(job.queue.put_nowait, item)

        with self._lock:
            self._waiting -= 1
            self._running += 1
        try:
            if job.abort.is_set():
                return
            for index in range(job.request.params.n):  # n > 1: one choice after another, seed + index each
                self._generate(job, index, put)
                if job.abort.is_set():
                    return
        except Exception as exc:  # noqa: BLE001 - reported to the request, and the backend marked failed
            self._healthy = False
            put(BackendError(f"transformers backend failed: {type(exc).__name__}: {exc}"))
        finally:
            with self._lock:
                self._running -= 1

    def _generate(self, job: _Job, index: int, put: Any) -> None:
        """One choice, token by token with the model's own cache (the prompt is prefilled for each)."""
        p = choice_params(job.request.params, index)
        gen = torch.Generator().manual_seed(p.seed) if p.seed is not None else None
        prompt, outputs = list(job.request.prompt_token_ids), []
        with torch.inference_mode():
            ids = torch.tensor([prompt], dtype=torch.long)  # [1, T]
            out = self.model(input_ids=ids, use_cache=True)
            past = _out_cache(out)
            for i in range(p.max_tokens):
                s = sample_next(out.logits[0, -1], p, gen, prompt, outputs)  # logits [1, T, V] -> [V]
                tok = s.token_id
                outputs.append(tok)
                last = i == p.max_tokens - 1
                finish = "stop" if tok in self._eos and not p.ignore_eos else ("length" if last else None)
                put((index, tok, finish, s.logprob))
                if finish or job.abort.is_set():
                    return
                out = self.model(input_ids=torch.tensor([[tok]]), use_cache=True, **{self._cache_kw: past})
                past = _out_cache(out)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        if not self._healthy or self._pool is None:
            raise BackendUnavailable("the transformers backend is not ready")
        job = _Job(request, asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:
            self._waiting += 1
        future = self._pool.submit(self._run, job)
        detoks = [IncrementalDetokenizer(self.tokenizer) for _ in range(request.params.n)]
        try:
            while True:
                item = await job.queue.get()
                if isinstance(item, Exception):
                    raise item
                index, tok, finish, logprob = item
                detok = detoks[index]
                text = detok.push([] if finish == "stop" else [tok])
                if finish:
                    text += detok.flush()
                yield StreamChunk((tok,), text, finish, None if logprob is None else (logprob,), index)
                if finish and index == request.params.n - 1:
                    return
        finally:
            job.abort.set()  # client gone or done: the worker stops at its next step
            if future.cancel():  # never started: undo its place in the queue
                with self._lock:
                    self._waiting -= 1
            else:
                with contextlib.suppress(Exception):
                    await asyncio.wrap_future(future)


def _smoke() -> None:  # pragma: no cover - manual check: python -m ch08_production.backends.hf
    async def go() -> None:
        b = TransformersBackend("smollm2-135m", "smollm2-135m")
        await b.start()
        from common.chat import FRANCE_PROMPT, chat_ids

        req = GenerationRequest("r1", tuple(chat_ids(b.tokenizer, FRANCE_PROMPT)),
                                SamplingParams(max_tokens=12, temperature=0.0))
        t0 = time.perf_counter()
        async for c in b.stream(req):
            print(repr(c.text), c.finish_reason)
        print(f"{time.perf_counter() - t0:.2f} s")
        await b.stop()

    asyncio.run(go())


if __name__ == "__main__":  # pragma: no cover
    _smoke()
