"""Async streaming front end of the engine: the loop runs in a background thread (what ch08 serves).

Book sections: 5.4.1 请求生命周期管理 (a request streams tokens as they come and can be aborted when the
client goes away).

    engine = AsyncLLMEngine(LLMEngine(EngineConfig()))
    async for out in engine.stream("What is 2+2?", SamplingParams(max_tokens=16)):
        print(out.new_text, end="")
    engine.shutdown()

One thread owns the :class:`LLMEngine` (torch and the scheduler are never touched from two threads): it
drains an inbox of new requests and aborts between steps, runs ``step()``, and hands each request's
:class:`RequestOutput` to that request's ``asyncio.Queue`` through ``call_soon_threadsafe``. Leaving the
``async for`` early (a client disconnect, a ``break``, a cancelled task) aborts the request and waits
until the engine thread has freed its KV blocks (at the next step boundary), so a server's handler
returns with the memory back. A failing ``step()`` fails every open stream and is kept in ``error``
(``healthy`` turns False); ``shutdown()`` ends every open stream with :class:`EngineStopped`.

    python -m ch05_scheduling.async_engine --smoke    # two concurrent streams, one aborted
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import queue
import threading
from collections.abc import AsyncIterator
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field

from ch05_scheduling.engine import LLMEngine, RequestOutput
from ch05_scheduling.sequence import SamplingParams


@dataclass
class _Add:
    request_id: int
    prompt: str | Seq[int]
    params: SamplingParams
    kwargs: dict = field(default_factory=dict)


@dataclass
class _Abort:
    request_id: int
    done: concurrent.futures.Future | None = None  # set once the engine thread has freed the blocks


class EngineStopped(RuntimeError):
    """The engine loop was shut down while the request was still open."""


class AsyncLLMEngine:
    def __init__(self, engine: LLMEngine, *, idle_wait_s: float = 0.05) -> None:
        self.engine = engine
        self.idle_wait_s = idle_wait_s
        self._inbox: queue.SimpleQueue[_Add | _Abort] = queue.SimpleQueue()
        self._streams: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._streams_lock = threading.Lock()
        self._ids = itertools.count()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # the exception a step() raised, if one did

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="llm-engine-loop", daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    @property
    def num_active(self) -> int:
        with self._streams_lock:
            return len(self._streams)

    @property
    def num_queued(self) -> int:
        """Requests and aborts handed to the loop but not yet seen by the engine."""
        return self._inbox.qsize()

    @property
    def healthy(self) -> bool:
        """The loop thread runs and no step has failed (a server's readiness probe reads this)."""
        return self._thread is not None and self._thread.is_alive() and self.error is None

    # ------------------------------------------------------------------ the background loop
    def _deliver(self, rid: int, item: RequestOutput | BaseException) -> None:
        with self._streams_lock:
            target = self._streams.get(rid)
            if target is not None and (isinstance(item, BaseException) or item.finished):
                del self._streams[rid]
        if target is not None:
            loop, q = target
            loop.call_soon_threadsafe(q.put_nowait, item)

    def _drain_inbox(self) -> None:
        while True:
            try:
                msg = self._inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(msg, _Add):
                try:
                    self.engine.add_request(msg.prompt, msg.params, request_id=msg.request_id, **msg.kwargs)
                except Exception as exc:  # noqa: BLE001 - a bad request fails its own stream only
                    self._deliver(msg.request_id, exc)
            else:
                out = self.engine.abort(msg.request_id)
                if out is not None:
                    self._deliver(msg.request_id, out)
                if msg.done is not None:
                    msg.done.set_result(None)

    def _fail_open_streams(self, exc: BaseException) -> None:
        with self._streams_lock:
            rids = list(self._streams)
        for rid in rids:
            self.engine.abort(rid)
            self._deliver(rid, exc)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._drain_inbox()
            if not self.engine.has_unfinished():
                self._wake.wait(self.idle_wait_s)
                self._wake.clear()
                continue
            try:
                outs = self.engine.step()
            except Exception as exc:  # noqa: BLE001 - fail every open stream, keep the thread alive
                self.error = exc
                self._fail_open_streams(exc)
                continue
            for out in outs:
                self._deliver(out.request_id, out)
        self._drain_inbox()  # pending aborts still free their blocks and wake their waiters
        self._fail_open_streams(EngineStopped("the engine was shut down"))

    # ------------------------------------------------------------------ client API
    def add(self, prompt: str | Seq[int], params: SamplingParams | None = None, **kwargs) -> tuple[int, asyncio.Queue]:
        """Queue a request from inside a running event loop; returns its id and output queue."""
        self.start()
        rid = next(self._ids)
        q: asyncio.Queue = asyncio.Queue()
        with self._streams_lock:
            self._streams[rid] = (asyncio.get_running_loop(), q)
        self._inbox.put(_Add(rid, prompt, params or SamplingParams(), kwargs))
        self._wake.set()
        return rid, q

    def abort(self, request_id: int) -> concurrent.futures.Future:
        """Ask the loop to abort; the returned future is done once the request's blocks are free."""
        done: concurrent.futures.Future = concurrent.futures.Future()
        if self._thread is None or not self._thread.is_alive():
            done.set_result(None)  # no loop: nothing holds the request's blocks
            return done
        self._inbox.put(_Abort(request_id, done))
        self._wake.set()
        return done

    async def stream(self, prompt: str | Seq[int], params: SamplingParams | None = None,
                     **kwargs) -> AsyncIterator[RequestOutput]:
        """Yield a :class:`RequestOutput` per new token; the last one has ``finished=True``."""
        rid, q = self.add(prompt, params, **kwargs)
        finished = False
        try:
            while True:
                item = await q.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                finished = item.finished
                yield item
                if finished:
                    return
        finally:
            if not finished:
                with self._streams_lock:
                    self._streams.pop(rid, None)
                # wait until the blocks are free, so a server handler returns with the memory back;
                # shielded: a cancelled client still gets its abort carried out
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(asyncio.wrap_future(self.abort(rid)))

    async def generate(self, prompt: str | Seq[int], params: SamplingParams | None = None,
                       **kwargs) -> RequestOutput:
        last = None
        async for last in self.stream(prompt, params, **kwargs):  # noqa: B007
            pass
        assert last is not None
        return last


def main(argv: list[str] | None = None) -> int:
    from ch05_scheduling.engine import EngineConfig
    from common.chat import DEMO_PROMPTS, chat_ids
    from common.cli import add_common_args, friendly_errors, make_parser

    parser = make_parser("python -m ch05_scheduling.async_engine", __doc__)
    add_common_args(parser)
    args = parser.parse_args(argv)

    async def demo(engine: AsyncLLMEngine) -> None:
        tok = engine.engine.tokenizer

        async def one(prompt: str, limit: int | None) -> None:
            n = 0
            async for out in engine.stream(chat_ids(tok, prompt), SamplingParams(max_tokens=12)):
                n += 1
                print(f"[{out.request_id}] +{out.new_text!r}")
                if limit is not None and n >= limit:
                    print(f"[{out.request_id}] client leaves after {n} tokens -> abort")
                    break

        await asyncio.gather(one(DEMO_PROMPTS[0], None), one(DEMO_PROMPTS[1], 3))

    with friendly_errors():
        engine = AsyncLLMEngine(LLMEngine(EngineConfig(model=args.model, device=args.device, dtype=args.dtype)))
        try:
            asyncio.run(demo(engine))
        finally:
            engine.shutdown()
        print(f"KV blocks in use after both streams: {engine.engine.scheduler.block_manager.num_used_blocks}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
