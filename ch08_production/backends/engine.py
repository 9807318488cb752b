"""The ``engine`` backend: ch05's continuous-batching engine behind the server (book 8.1, 8.9; ch05 5.3).

ch05's :class:`AsyncLLMEngine` already runs the engine on one dedicated thread that owns it (the event
loop only sends adds and aborts, and receives each step's outputs with ``call_soon_threadsafe``), and
closing a stream early waits until the request's KV blocks are free. This backend only adapts it to the
server's :class:`Backend` protocol: request and chunk types (``n > 1`` is the engine's own parallel
sampling on forked blocks; each choice's news becomes a chunk with its ``index``), errors (a request that cannot fit is
:class:`BackendUnavailable`; a failed ``step()`` fails every in-flight request with
:class:`BackendError` and makes the backend unhealthy), stats for ``/metrics``, and :meth:`restart`,
which builds a fresh engine around the already-loaded weights.

    python -m ch08_production.server --backend engine --max-num-seqs 16
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from ch05_scheduling.async_engine import AsyncLLMEngine, EngineStopped
from ch05_scheduling.engine import EngineConfig, LLMEngine
from ch08_production.backends.base import (
    BackendError,
    BackendStats,
    BackendUnavailable,
    GenerationRequest,
    StreamChunk,
)


class EngineBackend:
    name = "engine"
    supports_structured_outputs = True   # ch05's engine masks the logits with the request's grammar

    def __init__(self, model: str, model_name: str | None = None, max_model_len: int | None = None,
                 **engine_kwargs: Any) -> None:
        self.model_spec = model
        self.model_name = model_name or model
        self.engine_kwargs = engine_kwargs
        self._max_len_override = max_model_len
        self.max_model_len = max_model_len or 2048
        self.tokenizer: Any = None
        self.engine: LLMEngine | None = None
        self._async: AsyncLLMEngine | None = None
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
        if self._async is not None and self._async.healthy and reuse is None:
            return  # already serving (a benchmark may share one loaded engine between runs)
        engine = await asyncio.to_thread(self._build, reuse)
        if engine.tokenizer is None:
            raise BackendUnavailable("the engine has no tokenizer (dummy weights?); the server needs one")
        sched = engine.scheduler.config
        self.max_model_len = min(sched.max_model_len, sched.capacity_tokens)
        self.engine, self.tokenizer = engine, engine.tokenizer
        self._async = AsyncLLMEngine(engine)
        self._async.start()

    async def stop(self) -> None:
        if self._async is not None:
            await asyncio.to_thread(self._async.shutdown)
            self._async = None

    async def restart(self) -> None:
        old = self.engine
        await self.stop()
        if old is not None:
            self._preemptions_before += old.scheduler.num_preemptions
        await self.start(reuse=old)

    def stats(self) -> BackendStats:
        e, a = self.engine, self._async
        if e is None or a is None:
            return BackendStats(healthy=False)
        s, bm = e.scheduler, e.scheduler.block_manager
        return BackendStats(num_running=len(s.running), num_waiting=len(s.waiting) + a.num_queued,
                            kv_cache_usage=s.kv_usage, num_used_blocks=bm.num_used_blocks,
                            num_total_blocks=bm.num_blocks,
                            num_preemptions=self._preemptions_before + s.num_preemptions, healthy=a.healthy)

    def max_n(self, prompt_len: int, max_tokens: int) -> int:
        """The most choices one request of this shape can have on this engine: all n run at once (the
        scheduler's seat cap) and their worst-case blocks (the prompt's full blocks once, the rest per
        choice, as :meth:`SequenceGroup.max_blocks`) fit the cache. The server turns a larger n into a 400."""
        e = self.engine
        if e is None:
            return 1
        s = e.scheduler
        cfg = s.config
        bs = cfg.block_size
        worst = min(prompt_len + max_tokens, cfg.max_model_len)
        shared = prompt_len // bs
        per_choice = max(1, -(-worst // bs) - shared)
        return max(1, min(s.policy.max_running(cfg.max_num_seqs), (cfg.num_blocks - shared) // per_choice))

    # ---------------------------------------------------------------- the API

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        a = self._async
        if a is None or not a.healthy:
            raise BackendUnavailable("the engine is not ready")
        # the same SamplingParams class as the engine's (ch04's); stop strings stay with the server's pipeline,
        # which applies them the same way for every backend
        params = dataclasses.replace(request.params, stop=()) if request.params.stop else request.params
        outputs = a.stream(list(request.prompt_token_ids), params)
        reported: set[int] = set()  # n > 1: choices whose finish was already sent
        try:
            async for out in outputs:
                if out.outputs is None:   # n = 1: one chunk per engine output, as always
                    lps = tuple(out.new_logprobs) if out.new_logprobs is not None else None
                    yield StreamChunk(tuple(out.new_token_ids), out.new_text,
                                      out.finish_reason if out.finished else None, lps)
                    continue
                for c in out.outputs:     # the engine's n choices: those with news this step
                    if c.index in reported or not (c.new_token_ids or c.finished):
                        continue
                    if c.finished:
                        reported.add(c.index)
                    lps = tuple(c.new_logprobs) if c.new_logprobs is not None else None
                    yield StreamChunk(tuple(c.new_token_ids), c.new_text, c.finish_reason if c.finished else None,
                                      lps, c.index)
        except EngineStopped as exc:
            raise BackendUnavailable(str(exc)) from exc
        except ValueError as exc:  # UsageError from add_request: the request cannot fit this engine
            raise BackendUnavailable(str(exc)) from exc
        except BackendError:
            raise
        except Exception as exc:  # a failed step(): every in-flight request learns of it
            raise BackendError(f"the engine failed: {type(exc).__name__}: {exc}") from exc
        finally:
            await outputs.aclose()  # an early close aborts the request and waits for its blocks
