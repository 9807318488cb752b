"""The ``engine`` backend: ch05's continuous-batching engine behind the server (book 8.1, 8.9; ch05 5.3).

The engine is not thread-safe and its ``step()`` is compute-bound, so it lives on one dedicated thread
that owns it completely: the event loop only sends commands (add / abort) through a queue and receives
each step's outputs with ``call_soon_threadsafe``. When a stream is closed early (client gone,
timeout, stop string), the abort runs on the engine thread and the stream waits for it, so by the
time the server's request handler returns the request's KV blocks are back in the free list.
An exception inside ``step()`` fails every in-flight request with :class:`BackendError` and marks the
backend unhealthy; :meth:`restart` builds a fresh engine around the already-loaded weights.
ch05's ``AsyncLLMEngine`` follows the same one-thread pattern; this backend keeps its own loop because
the server needs the abort *awaited* (blocks freed before the handler returns) and a restart path.

    python -m ch08_production.server --backend engine --max-num-seqs 16
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import itertools
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ch05_scheduling.engine import EngineConfig, LLMEngine
from ch05_scheduling.sequence import SamplingParams as EngineSamplingParams
from ch08_production.backends.base import (
    BackendError,
    BackendStats,
    BackendUnavailable,
    GenerationRequest,
    StreamChunk,
)


@dataclass
class _Sink:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue

    def put(self, item: Any) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class EngineBackend:
    name = "engine"

    def __init__(self, model: str, model_name: str | None = None, max_model_len: int | None = None,
                 **engine_kwargs: Any) -> None:
        self.model_spec = model
        self.model_name = model_name or model
        self.engine_kwargs = engine_kwargs
        self._max_len_override = max_model_len
        self.max_model_len = max_model_len or 2048
        self.tokenizer: Any = None
        self.engine: LLMEngine | None = None
        self._commands: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sinks: dict[int, _Sink] = {}
        self._ids = itertools.count()
        self._healthy = False
        self._preemptions_before = 0  # carried across restarts so the counter stays monotonic

    # ---------------------------------------------------------------- lifecycle

    def _build(self, reuse: LLMEngine | None = None) -> LLMEngine:
        kw = dict(self.engine_kwargs)
        if reuse is None:
            from common.loader import load_config

            ctx = int(load_config(self.model_spec).get("max_position_embeddings", 2048))
            kw.setdefault("max_model_len", min(self._max_len_override or ctx, ctx))
            return LLMEngine(EngineConfig(model=self.model_spec, **kw))
        return LLMEngine(reuse.config, model=reuse.model, tokenizer=reuse.tokenizer)

    async def start(self, reuse: LLMEngine | None = None) -> None:
        if self._thread is not None and self._thread.is_alive() and reuse is None:
            return  # already serving (a benchmark may share one loaded engine between runs)
        engine = await asyncio.to_thread(self._build, reuse)
        if engine.tokenizer is None:
            raise BackendUnavailable("the engine has no tokenizer (dummy weights?); the server needs one")
        sched = engine.scheduler.config
        self.max_model_len = min(sched.max_model_len, sched.capacity_tokens)
        self.engine, self.tokenizer = engine, engine.tokenizer
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="engine-loop", daemon=True)
        self._thread.start()
        self._healthy = True

    async def stop(self) -> None:
        self._healthy = False
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 30)
            self._thread = None

    async def restart(self) -> None:
        old = self.engine
        await self.stop()
        if old is not None:
            self._preemptions_before += old.scheduler.num_preemptions
        await self.start(reuse=old)

    def stats(self) -> BackendStats:
        e = self.engine
        if e is None:
            return BackendStats(healthy=False)
        s, bm = e.scheduler, e.scheduler.block_manager
        return BackendStats(num_running=len(s.running), num_waiting=len(s.waiting) + len(self._commands),
                            kv_cache_usage=s.kv_usage, num_used_blocks=bm.num_used_blocks,
                            num_total_blocks=bm.num_blocks,
                            num_preemptions=self._preemptions_before + s.num_preemptions, healthy=self._healthy)

    # ---------------------------------------------------------------- the engine thread

    def _loop(self) -> None:
        engine = self.engine
        assert engine is not None
        try:
            while not self._stop.is_set():
                self._run_commands(engine)
                if not engine.has_unfinished():
                    self._wake.wait(0.05)
                    self._wake.clear()
                    continue
                for out in engine.step():
                    sink = self._sinks.get(out.request_id)
                    if sink is None:
                        continue
                    sink.put(StreamChunk(tuple(out.new_token_ids), out.new_text,
                                         out.finish_reason if out.finished else None))
                    if out.finished:
                        self._sinks.pop(out.request_id, None)
            self._fail_all(BackendUnavailable("the engine was stopped"))
        except Exception as exc:  # noqa: BLE001 - every in-flight request learns of it
            self._healthy = False
            self._fail_all(BackendError(f"the engine failed: {type(exc).__name__}: {exc}"))

    def _fail_all(self, err: Exception) -> None:
        for sink in list(self._sinks.values()):
            sink.put(err)
        self._sinks.clear()
        while self._commands:
            cmd = self._commands.popleft()
            if cmd[0] == "abort":
                cmd[2].set_result(None)
            else:
                cmd[4].put(err)

    def _run_commands(self, engine: LLMEngine) -> None:
        while self._commands:
            cmd = self._commands.popleft()
            if cmd[0] == "add":
                _, rid, ids, params, sink = cmd
                try:
                    engine.add_request(list(ids), params, request_id=rid)
                except ValueError as exc:  # UsageError: the request cannot fit this engine
                    sink.put(BackendUnavailable(str(exc)))
                    continue
                self._sinks[rid] = sink
            else:
                _, rid, done = cmd
                self._sinks.pop(rid, None)
                engine.abort(rid)  # frees its blocks now
                done.set_result(None)

    # ---------------------------------------------------------------- the API

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        if not self._healthy or self.engine is None:
            raise BackendUnavailable("the engine is not ready")
        p = request.params
        params = EngineSamplingParams(max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p,
                                      top_k=p.top_k, seed=p.seed, ignore_eos=p.ignore_eos)
        rid = next(self._ids)
        sink = _Sink(asyncio.get_running_loop(), asyncio.Queue())
        self._commands.append(("add", rid, request.prompt_token_ids, params, sink))
        self._wake.set()
        finished = False
        try:
            while True:
                item = await sink.queue.get()
                if isinstance(item, Exception):
                    finished = True
                    raise item
                finished = item.finish_reason is not None
                yield item
                if finished:
                    return
        finally:
            if not finished and self._thread is not None and self._thread.is_alive():
                done: concurrent.futures.Future = concurrent.futures.Future()
                self._commands.append(("abort", rid, done))
                self._wake.set()
                with contextlib.suppress(asyncio.CancelledError):  # the abort still runs on the engine thread
                    await asyncio.shield(asyncio.wrap_future(done))
