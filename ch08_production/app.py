"""The OpenAI-compatible routes (book 8.1): completions, chat completions (SSE), models, health, metrics.

``create_app(state)`` builds the FastAPI app around a :class:`ServerState`. Each generation request goes
through the same steps: model check (404), tokenize and fit the context (400), content filter (400),
per-key rate limit (429), admission (503), then :func:`ch08_production.pipeline.run_generation`.
Run it with ``python -m ch08_production.server``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ch08_production import protocol as P
from ch08_production.backends.base import GenerationRequest, SamplingParams, SamplingParamsError
from ch08_production.gateway import GatewayMiddleware
from ch08_production.observe import log, new_request_id
from ch08_production.pipeline import RequestRecord, run_generation
from ch08_production.protocol import APIError
from ch08_production.security import redact
from ch08_production.state import ServerState
from ch08_production.structured_request import StructuredOutputError, requested_field, structured_output
from ch08_production.tools import template_knows_tools, tool_message, tool_plan

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class SSEResponse(StreamingResponse):
    """Closes its generator even when cancelled mid-send, so the request's cleanup always runs."""

    async def stream_response(self, send: Any) -> None:
        try:
            await super().stream_response(send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[union-attr]


def sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)}\n\n"


def _prompt_ids(state: ServerState, body: P.CompletionRequest | P.ChatCompletionRequest) -> tuple[list[int], str]:
    tok = state.backend.tokenizer
    if isinstance(body, P.ChatCompletionRequest):
        from common.chat import chat_prompt

        text = chat_prompt(tok, body.template_messages(native_tools=template_knows_tools(tok)))
        return tok(text, add_special_tokens=False)["input_ids"], text
    prompt = body.prompt[0] if isinstance(body.prompt, list) and isinstance(body.prompt[0], str) else body.prompt
    if isinstance(prompt, str):
        if not prompt:
            raise APIError(400, "'prompt' must not be empty", param="prompt")
        return tok(prompt)["input_ids"], prompt
    vocab = len(tok)
    bad = next((t for t in prompt if t >= vocab), None)
    if bad is not None:
        raise APIError(400, f"token id {bad} in 'prompt' is outside the vocabulary (0..{vocab - 1})", param="prompt")
    return list(prompt), tok.decode(prompt)


def _fit_context(state: ServerState, n_prompt: int, requested: int | None) -> int:
    ctx = state.backend.max_model_len
    if requested is not None and requested > ctx:
        raise APIError(400, f"'max_tokens' is {requested} but this model's context is {ctx} tokens; "
                            f"ask for at most {max(ctx - n_prompt, 0)}", param="max_tokens")
    if n_prompt >= ctx:
        raise APIError(400, f"the prompt has {n_prompt} tokens, which fills this model's context of {ctx} "
                            "tokens; shorten it", param="messages" if requested is None else "prompt",
                       code="context_length_exceeded")
    room = ctx - n_prompt
    if requested is None:
        return min(state.config.default_max_tokens, room)
    if requested > room:
        raise APIError(400, f"the prompt has {n_prompt} tokens and 'max_tokens' is {requested}: together they "
                            f"exceed this model's context of {ctx} tokens; lower max_tokens to {room} or "
                            "shorten the prompt", param="max_tokens", code="context_length_exceeded")
    return requested


def sampling_params(state: ServerState, body: P.CompletionRequest | P.ChatCompletionRequest,
                    max_tokens: int) -> SamplingParams:
    """The request's sampling fields as ch04's SamplingParams (the engine's own); a bad value is one 400."""
    chat = isinstance(body, P.ChatCompletionRequest)
    try:
        return SamplingParams(
            max_tokens=max_tokens, temperature=1.0 if body.temperature is None else body.temperature,
            top_p=1.0 if body.top_p is None else body.top_p, top_k=max(body.top_k or 0, 0),
            min_p=body.min_p or 0.0, seed=body.seed, stop=body.stop_list(), ignore_eos=body.ignore_eos,
            presence_penalty=body.presence_penalty, frequency_penalty=body.frequency_penalty,
            repetition_penalty=1.0 if body.repetition_penalty is None else body.repetition_penalty,
            logprobs=body.num_logprobs() if chat else body.logprobs,
            include_stop_str_in_output=body.include_stop_str_in_output, n=body.n,
            structured_outputs=structured_output(body))
    except StructuredOutputError as exc:
        state.metrics.rejected.labels("invalid").inc()
        raise APIError(400, f"invalid '{exc.field}': {exc.reason}", param=exc.field) from None
    except SamplingParamsError as exc:
        state.metrics.rejected.labels("invalid").inc()
        raise APIError(400, f"invalid '{exc.field}': {exc}", param=exc.field) from None


def _check_structured(backend: Any, body: P.CompletionRequest | P.ChatCompletionRequest,
                      params: SamplingParams) -> None:
    """A 400 when the backend that would serve the request cannot constrain its output."""
    if params.structured_outputs is not None and not getattr(backend, "supports_structured_outputs", False):
        field = requested_field(body)
        raise APIError(400, f"'{field}' (structured outputs) is not supported by the '{backend.name}' backend "
                            "serving this request: it samples without a grammar; use the engine or vllm backend, "
                            "or send the request without it", param=field)


def _token_texter(tokenizer: Any) -> P.TokenText:
    """Token id -> text, one token at a time (special tokens kept), memoized for the request."""
    memo: dict[int, str] = {}

    def text(tid: int) -> str:
        if tid not in memo:
            memo[tid] = tokenizer.decode([tid], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return memo[tid]

    return text


async def _wait_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def handle(state: ServerState, request: Request, body: P.CompletionRequest | P.ChatCompletionRequest
                 ) -> Response:
    chat = isinstance(body, P.ChatCompletionRequest)
    cfg = state.config
    if body.model != cfg.model_name:
        raise APIError(404, f"the model '{body.model}' does not exist on this server; use '{cfg.model_name}' "
                            "(see GET /v1/models)", param="model", code="model_not_found")
    ids, prompt_text = _prompt_ids(state, body)
    max_tokens = _fit_context(state, len(ids), body.requested_max_tokens() if chat else body.max_tokens)
    params = sampling_params(state, body, max_tokens)
    check_text = "\n".join(m["content"] for m in body.template_messages()) if chat else prompt_text
    if not state.content_filter.check(check_text).allowed:
        state.metrics.rejected.labels("content_filter").inc()
        raise APIError(400, "the request was refused by this server's content-safety policy; rephrase it",
                       param="messages" if chat else "prompt", code="content_policy_violation")
    key_id = request.state.key_id
    reserved = len(ids) + params.n * max_tokens   # every choice may run to max_tokens
    decision = state.limiter.acquire(key_id, reserved)
    if not decision.allowed:
        state.metrics.rejected.labels("rate_limit").inc()
        raise APIError(429, decision.reason, "rate_limit_error", code="rate_limit_exceeded",
                       headers={"Retry-After": str(max(1, math.ceil(decision.retry_after_s)))})
    try:
        admission = state.admit()
        _check_structured(admission.backend, body, params)
    except APIError:
        state.limiter.refund(key_id, reserved)
        raise
    if admission.fallback_reason:
        state.metrics.fallback.labels(admission.fallback_reason).inc()
    limit_n = getattr(admission.backend, "max_n", None)   # the engine runs a request's n choices at once
    most = limit_n(len(ids), max_tokens) if limit_n is not None and params.n > 1 else params.n
    if params.n > most:
        state.limiter.refund(key_id, reserved)
        state.metrics.rejected.labels("invalid").inc()
        raise APIError(400, f"'n' is {params.n} but this server runs at most {most} choices of a request this "
                            f"long at once (its batch seats and KV cache); lower n or max_tokens", param="n")
    if params.structured_outputs is not None:
        state.metrics.structured.labels(params.structured_outputs.kind).inc()
    rid = new_request_id("chatcmpl" if chat else "cmpl")
    trace = request.state.trace
    gen = GenerationRequest(rid, tuple(ids), params, prompt_text, trace.header())
    record = RequestRecord(rid, len(ids))
    state.inflight += 1
    cost_token = state.metrics.cost.start()
    created = int(time.time())
    model = cfg.model_name
    events = run_generation(admission.backend, gen, record, timeout_s=cfg.request_timeout_s,
                            output_filter=state.content_filter, on_failure=state.on_backend_failure)

    def finish() -> None:
        state.inflight -= 1
        cost = state.metrics.cost.finish(cost_token)
        state.limiter.refund(key_id, params.n * max_tokens - record.completion_tokens)
        reason = record.finish_reason or "abort"
        if record.finish_reason or record.completion_tokens:
            state.metrics.observe_finished(prompt_tokens=len(ids), completion_tokens=record.completion_tokens,
                                           ttft_s=record.ttft_s, itls=record.itls, e2e_s=record.e2e_s,
                                           finish=reason, cost_dollars=cost, n=params.n)
        fields: dict[str, Any] = dict(request_id=request.state.request_id, completion_id=rid,
                                      trace_id=trace.trace_id, span_id=trace.span_id, key_id=key_id,
                                      backend=admission.backend.name, fallback=admission.fallback_reason,
                                      prompt_tokens=len(ids), completion_tokens=record.completion_tokens,
                                      finish_reason=reason, ttft_s=record.ttft_s, e2e_s=round(record.e2e_s, 4),
                                      cost_dollars=cost)
        if cfg.log_prompts:
            fields.update(prompt=redact(prompt_text), output=redact(record.text))
        log(state.logger, logging.INFO, "request finished", **fields)

    token_text = _token_texter(admission.backend.tokenizer) if params.logprobs is not None else None
    fingerprint = state.fingerprints.get(id(admission.backend))
    if body.stream:
        usage_on = bool(body.stream_options and body.stream_options.include_usage)
        return SSEResponse(_sse_events(events, finish, record, rid, model, created, chat, usage_on, token_text,
                                       params.n, fingerprint),
                           media_type="text/event-stream", headers=SSE_HEADERS)
    text_parts: list[list[str]] = [[] for _ in range(params.n)]
    logprobs: list[list] = [[] for _ in range(params.n)]
    finishes: list[str | None] = [None] * params.n
    error: list[APIError] = []

    async def collect() -> None:
        try:
            async for ev in events:
                text_parts[ev.index].append(ev.text)
                logprobs[ev.index].extend(ev.logprobs)
                finishes[ev.index] = ev.finish_reason or finishes[ev.index]
        except APIError as exc:  # kept out of the task group, which would wrap it in an ExceptionGroup
            error.append(exc)

    try:
        async with anyio.create_task_group() as tg:
            async def watch() -> None:
                await _wait_disconnect(request)
                tg.cancel_scope.cancel()  # the client left: abort instead of finishing for nobody

            tg.start_soon(watch)
            await collect()
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await events.aclose()
        finish()
    if error:
        raise error[0]
    if record.finish_reason is None:
        return Response(status_code=499)  # client closed the request; nobody reads this
    choices = []
    for i in range(params.n):
        lp_body = None
        if token_text is not None:
            lp_body = (P.chat_logprobs(logprobs[i], token_text) if chat
                       else P.completion_logprobs(logprobs[i], token_text))
        choices.append(P.Choice(i, "".join(text_parts[i]), P.openai_finish(finishes[i]), lp_body))
    build = P.chat_body if chat else P.completion_body
    c0 = choices[0]
    out = build(rid, model, c0.text, c0.finish_reason, len(ids), record.completion_tokens, created,
                c0.logprobs, choices, fingerprint)
    plan = tool_plan(body) if chat else None
    if plan is not None:
        for c, body_choice in zip(choices, out["choices"], strict=True):
            if c.finish_reason == "stop" and (msg := tool_message(plan, c.text)) is not None:
                body_choice.update(message=msg, finish_reason="tool_calls")   # the grammar made it a call
    return JSONResponse(out)


async def _sse_events(events: AsyncIterator, finish: Any, record: RequestRecord, rid: str, model: str,
                      created: int, chat: bool, usage_on: bool, token_text: P.TokenText | None = None,
                      n: int = 1, fingerprint: str | None = None) -> AsyncIterator[str]:
    obj = "chat.completion.chunk" if chat else "text_completion"
    offsets = [0] * n  # text_offset of each choice's next token (completions logprobs)
    try:
        if chat:  # the role first, once per choice (as OpenAI and vLLM)
            for i in range(n):
                yield sse(P.chat_chunk(rid, model, {"role": "assistant", "content": ""}, None, created, index=i,
                                       fingerprint=fingerprint))
        try:
            async for ev in events:
                fin = P.openai_finish(ev.finish_reason)
                lp = None
                if token_text is not None:
                    if chat:
                        lp = P.chat_logprobs(ev.logprobs, token_text)
                    else:
                        lp = P.completion_logprobs(ev.logprobs, token_text, offsets[ev.index])
                        offsets[ev.index] += sum(len(t) for t in lp["tokens"])
                if chat:
                    yield sse(P.chat_chunk(rid, model, {"content": ev.text} if ev.text or not fin else {}, fin,
                                          created, lp, ev.index, fingerprint))
                else:
                    yield sse(P.completion_chunk(rid, model, ev.text, fin, created, lp, ev.index, fingerprint))
        except APIError as exc:
            yield sse(exc.body())
        if usage_on:
            yield sse(P.usage_chunk(rid, model, obj, created, record.prompt_tokens, record.completion_tokens,
                                    fingerprint))
        yield sse("[DONE]")
    finally:
        with anyio.CancelScope(shield=True):
            await events.aclose()
        finish()


def create_app(state: ServerState) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        yield
        await state.drain(state.config.shutdown_grace_s)
        await state.stop()

    app = FastAPI(title="llm-inference-companion OpenAI-compatible server", version="0.1.0", lifespan=lifespan)

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        state.metrics.rejected.labels("invalid").inc()
        msg, param = P.format_validation_error(list(exc.errors()))
        return JSONResponse(P.error_body(msg, "invalid_request_error", param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found_error", 405: "invalid_request_error"}.get(exc.status_code, "invalid_request_error")
        msg = {404: "no such route; see /docs for the API", 405: "method not allowed on this route"}.get(
            exc.status_code, str(exc.detail))
        return JSONResponse(P.error_body(msg, kind), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log(state.logger, logging.ERROR, "unhandled error", error=f"{type(exc).__name__}: {exc}")
        return JSONResponse(P.error_body("internal server error", "server_error"), status_code=500)

    @app.post("/v1/completions")
    async def completions(body: P.CompletionRequest, request: Request) -> Response:
        return await handle(state, request, body)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: P.ChatCompletionRequest, request: Request) -> Response:
        return await handle(state, request, body)

    @app.get("/v1/models")
    async def models() -> dict:
        return P.models_body(state.config.model_name, state.backend.max_model_len, int(time.time()))

    @app.get("/health")
    async def health() -> JSONResponse:
        ok = state.live()
        return JSONResponse({"status": "ok" if ok else "failed"}, status_code=200 if ok else 503)

    @app.get("/ready")
    async def ready() -> JSONResponse:
        ok = state.ready()
        status = ("ready" if ok else "draining" if state.draining else "failed" if state.failed
                  else "starting")
        return JSONResponse({"status": status, "inflight": state.inflight}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        with contextlib.suppress(Exception):  # a stats failure must not break scraping
            state.metrics.update_from_backend(state.backend.stats(), state.backend.name)
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    known = frozenset(r.path for r in app.routes if hasattr(r, "path"))
    app.add_middleware(GatewayMiddleware, state=state, known_paths=known)
    app.state.server_state = state
    return app

