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
from ch05_scheduling.config import EngineConfig
from ch05_scheduling.engine import EngineStats, LLMEngine
from ch08_production.backends.base import (
    BackendError,
    BackendStats,
    BackendUnavailable,
    GenerationRequest,
    StreamChunk,
)
from common.errors import UsageError


class EngineBackend:
    """ch05's engine as a :class:`Backend`. It reads only the engine's public surface: ``max_model_len``,
    ``max_choices()``, ``stats()``, and ch05's ``RequestRejected`` (a ``UsageError``) for a request that can
    never fit, which becomes a 503 like any request the backend cannot take now."""

    name = "engine"
    supports_structured_outputs = True   # ch05's engine masks the logits with the request's grammar

    def __init__(self, model: str, model_name: str | None = None, max_model_len: int | None = None,
                 config: EngineConfig | None = None, quantization: str | None = None, **engine_kwargs: Any) -> None:
        """``config`` is the engine's configuration (``ServerConfig.engine``); ``engine_kwargs`` change fields
        of it (``max_num_seqs=8``). Its ``model`` and ``max_model_len`` come from the arguments before it.
        ``quantization`` (``"int8"``, ``"int4"``) RTN-quantizes the weights at load onto ch06's packed
        kernels; a GPTQ/AWQ/compressed-tensors checkpoint loads through ch06 without it."""
        self.model_spec = model
        self.model_name = model_name or model
        self.config = dataclasses.replace(config or EngineConfig(), model=model, **engine_kwargs)
        self._max_len_override = max_model_len
        self.quantization = quantization
        self.weights = "fp32"   # what the engine's linears are once started: fp32, int8, int4, or a checkpoint's method
        self.max_model_len = max_model_len or 2048
        self.tokenizer: Any = None
        self.engine: LLMEngine | None = None
        self._async: AsyncLLMEngine | None = None
        self._before = EngineStats(0, 0, 0.0, 0, 0, 0, 0, 0, 0)  # counters of engines before a restart

    # ---------------------------------------------------------------- lifecycle

    def _build(self, reuse: LLMEngine | None = None) -> LLMEngine:
        if reuse is None:
            from common.loader import load_config

            hf = load_config(self.model_spec)
            ctx = int(hf.get("max_position_embeddings", 2048))
            cfg = dataclasses.replace(self.config, max_model_len=min(self._max_len_override or ctx, ctx))
            method = (hf.get("quantization_config") or {}).get("quant_method")
            if self.quantization is None and method is None:
                return LLMEngine(cfg)
            from ch06_quantization.engine_quant import load_engine_model  # ch06's packed kernels
            from common.loader import load_tokenizer

            model = load_engine_model(self.model_spec, self.quantization, batch_hint=cfg.max_num_seqs)
            self.weights = self.quantization or method
            return LLMEngine(cfg, model=model, tokenizer=load_tokenizer(self.model_spec))
        return LLMEngine(reuse.config, model=reuse.model, tokenizer=reuse.tokenizer)

    async def start(self, reuse: LLMEngine | None = None) -> None:
        if self._async is not None and self._async.healthy and reuse is None:
            return  # already serving (a benchmark may share one loaded engine between runs)
        engine = await asyncio.to_thread(self._build, reuse)
        if engine.tokenizer is None:
            raise BackendUnavailable("the engine has no tokenizer (dummy weights?); the server needs one")
        self.max_model_len = engine.max_model_len
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
        if old is not None:  # keep the cumulative counters monotonic across the new engine
            s, b = old.stats(), self._before
            self._before = dataclasses.replace(
                b, num_preemptions=b.num_preemptions + s.num_preemptions,
                prefix_cache_queries=b.prefix_cache_queries + s.prefix_cache_queries,
                prefix_cache_hits=b.prefix_cache_hits + s.prefix_cache_hits)
        await self.start(reuse=old)

    def stats(self) -> BackendStats:
        e, a = self.engine, self._async
        if e is None or a is None:
            return BackendStats(healthy=False)
        s, b = e.stats(), self._before
        return BackendStats(num_running=s.num_running, num_waiting=s.num_waiting + a.num_queued,
                            kv_cache_usage=s.kv_usage, num_used_blocks=s.num_used_blocks,
                            num_total_blocks=s.num_total_blocks,
                            num_preemptions=b.num_preemptions + s.num_preemptions,
                            prefix_cache_queries=b.prefix_cache_queries + s.prefix_cache_queries,
                            prefix_cache_hits=b.prefix_cache_hits + s.prefix_cache_hits,
                            healthy=a.healthy)

    def max_n(self, prompt_len: int, max_tokens: int) -> int:
        """The most choices one request of this shape can have (the engine's ``max_choices``); 1 before start."""
        return 1 if self.engine is None else self.engine.max_choices(prompt_len, max_tokens)

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
        except UsageError as exc:  # RequestRejected (it can never fit), or a bad argument the server let through
            raise BackendUnavailable(str(exc)) from exc
        except BackendError:
            raise
        except Exception as exc:  # a failed step(): every in-flight request learns of it
            raise BackendError(f"the engine failed: {type(exc).__name__}: {exc}") from exc
        finally:
            await outputs.aclose()  # an early close aborts the request and waits for its blocks
