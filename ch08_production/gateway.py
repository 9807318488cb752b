"""The ASGI layer in front of every route: request ids, trace context, auth, body limit, HTTP metrics.

A plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which interferes with streaming and
disconnect detection). Order of checks for a ``/v1`` request: body size (413), API key (401, before
the body is even parsed, so an unauthenticated client learns nothing about validation), then the route.
Book 8.4.3/8.4.4 (ids, traces) and 8.8.1 (auth).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from ch08_production.observe import log, new_request_id, trace_from_header
from ch08_production.protocol import error_body
from ch08_production.security import bearer_token
from ch08_production.state import ServerState

Scope = dict[str, Any]


async def send_json(send: Any, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(payload).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class GatewayMiddleware:
    def __init__(self, app: Any, state: ServerState, known_paths: frozenset[str]) -> None:
        self.app = app
        self.state = state
        self.known_paths = known_paths

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path, method = scope["path"], scope["method"]
        rid = headers.get("x-request-id", "")[:64] or new_request_id("req")
        trace = trace_from_header(headers.get("traceparent"))
        scope.setdefault("state", {}).update(request_id=rid, trace=trace, key_id="anonymous")
        status = [500]
        extra = [(b"x-request-id", rid.encode("latin-1", "replace")), (b"traceparent", trace.header().encode())]

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = dict(message, headers=list(message.get("headers", [])) + extra)
            await send(message)

        t0 = time.perf_counter()
        try:
            await self._dispatch(scope, receive, send_wrapper, headers, path)
        finally:
            handler = path if path in self.known_paths else "other"
            self.state.metrics.http.labels(handler, method, str(status[0])).inc()
            if path not in ("/metrics", "/health", "/ready"):
                log(self.state.logger, logging.INFO, "http", request_id=rid, trace_id=trace.trace_id,
                    span_id=trace.span_id, parent_span_id=trace.parent_id, method=method, path=handler,
                    status=status[0], key_id=scope["state"].get("key_id"),
                    duration_ms=round((time.perf_counter() - t0) * 1000, 2))

    async def _dispatch(self, scope: Scope, receive: Any, send: Any, headers: dict[str, str], path: str) -> None:
        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            length = 0
        if length > self.state.config.max_body_bytes:
            self.state.metrics.rejected.labels("too_large").inc()
            await send_json(send, 413, error_body(
                f"the request body has {length} bytes; the limit is {self.state.config.max_body_bytes}",
                "invalid_request_error", None, "request_too_large"))
            return
        if path == "/v1" or path.startswith("/v1/"):
            keys = self.state.keys
            if keys.enabled:
                key_id = keys.check(bearer_token(headers.get("authorization")))
                if key_id is None:
                    self.state.metrics.rejected.labels("auth").inc()
                    await send_json(send, 401, error_body(
                        "missing or invalid API key: send 'Authorization: Bearer <key>' with a key this "
                        "server was configured with", "authentication_error", None, "invalid_api_key"),
                        {"WWW-Authenticate": "Bearer"})
                    return
                scope["state"]["key_id"] = key_id
        await self.app(scope, receive, send)
