"""The server's runtime state: backends, health, recovery, admission and degradation (book 8.9).

* 8.9.2 health: ``/health`` is liveness (the process can serve or recover), ``/ready`` is readiness
  (the primary backend is loaded and healthy, and we are not draining).
* 8.9.3 restart: when a backend fails, in-flight requests get a clean 500, ``/ready`` flips to 503,
  and a recovery task restarts the backend (``max_restarts`` tries with back-off). If that fails, or
  the policy is ``exit``, the server asks to exit non-zero so the orchestrator restarts the pod.
* 8.9.1 admission: at most ``max_pending`` requests in the server; the next gets 503 + Retry-After
  instead of a queue that grows until every request times out.
* 8.9.4 degradation: with a fallback backend, requests go there while the primary is unhealthy (policy
  ``unhealthy``) or also while it is saturated (``unhealthy+saturated``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ch08_production.backends.base import Backend
from ch08_production.config import ServerConfig
from ch08_production.metrics import ServerMetrics
from ch08_production.observe import log
from ch08_production.protocol import APIError
from ch08_production.security import AllowAll, APIKeyStore, BlocklistFilter, ContentFilter, RateLimiter


@dataclass(frozen=True)
class Admission:
    backend: Backend
    fallback_reason: str | None = None


class ServerState:
    def __init__(self, config: ServerConfig, backend: Backend, *, fallback: Backend | None = None,
                 keys: APIKeyStore | None = None, content_filter: ContentFilter | None = None,
                 logger: logging.Logger | None = None, request_exit: Callable[[int], None] | None = None) -> None:
        self.config = config
        self.backend = backend
        self.fallback = fallback
        self.fingerprints = {id(b): config.fingerprint(b.name) for b in (backend, fallback) if b is not None}
        self.keys = keys or APIKeyStore()
        self.limiter = RateLimiter(config.requests_per_minute, config.tokens_per_minute)
        if content_filter is None:
            content_filter = (BlocklistFilter.from_file(config.blocklist_file) if config.blocklist_file
                              else BlocklistFilter()) if config.content_filter else AllowAll()
        self.content_filter = content_filter
        self.metrics = ServerMetrics(config.model_name, config.cost_per_hour)
        self.logger = logger or logging.getLogger("ch08_production")
        self.request_exit = request_exit or (lambda code: None)
        self.started = False
        self.failed = False  # the primary backend failed and is not (yet) recovered
        self.fatal = False  # recovery gave up: liveness fails, the process should exit
        self.draining = False
        self.inflight = 0
        self._recovery: asyncio.Task | None = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        await self.backend.start()
        if self.fallback is not None:
            await self.fallback.start()
        self.started = True
        log(self.logger, logging.INFO, "backend ready", backend=self.backend.name, model=self.config.model_name,
            max_model_len=self.backend.max_model_len, auth=self.keys.enabled,
            fallback=self.fallback.name if self.fallback else None)

    async def drain(self, grace_s: float) -> None:
        """Stop admitting, then wait up to ``grace_s`` for in-flight requests to finish."""
        self.draining = True
        loop = asyncio.get_running_loop()
        end = loop.time() + grace_s
        while self.inflight and loop.time() < end:
            await asyncio.sleep(0.05)
        log(self.logger, logging.INFO, "drained", left_inflight=self.inflight)

    async def stop(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
        for b in (self.backend, self.fallback):
            if b is not None:
                try:
                    await b.stop()
                except Exception as exc:  # noqa: BLE001 - shutting down anyway
                    log(self.logger, logging.WARNING, "backend stop failed", error=repr(exc))

    # ---------------------------------------------------------------- health

    def ready(self) -> bool:
        return self.started and not self.failed and not self.draining and self.backend.stats().healthy

    def live(self) -> bool:
        return not self.fatal

    def on_backend_failure(self, backend: Backend, exc: BaseException) -> None:
        log(self.logger, logging.ERROR, "backend failure", backend=backend.name, error=f"{type(exc).__name__}: {exc}")
        if backend is not self.backend or self.failed:
            return
        self.failed = True
        if self.config.on_failure == "exit":
            self.fatal = True
            self.request_exit(1)
        else:
            self._recovery = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        for attempt in range(1, self.config.max_restarts + 1):
            await asyncio.sleep(min(0.2 * 2 ** attempt, 5.0))
            try:
                await self.backend.restart()
            except Exception as exc:  # noqa: BLE001 - counted as a failed attempt
                log(self.logger, logging.ERROR, "backend restart failed", attempt=attempt, error=repr(exc))
                continue
            self.failed = False
            log(self.logger, logging.INFO, "backend recovered", attempt=attempt)
            return
        self.fatal = True
        log(self.logger, logging.CRITICAL, "backend did not recover; exiting for the orchestrator to restart us",
            attempts=self.config.max_restarts)
        self.request_exit(1)

    # ---------------------------------------------------------------- admission

    def admit(self) -> Admission:
        """Pick the backend for a new request, or raise a 503 with Retry-After."""
        retry = {"Retry-After": str(self.config.retry_after_s)}
        if self.draining:
            raise APIError(503, "the server is shutting down; retry on another replica",
                           "service_unavailable_error", code="shutting_down", headers=retry)
        policy = self.config.fallback_policy
        fb = self.fallback if self.fallback is not None and policy != "never" else None
        primary_ok = self.started and not self.failed and self.backend.stats().healthy
        if not primary_ok:
            if fb is not None and fb.stats().healthy:
                return Admission(fb, "unhealthy")
            raise APIError(503, "the model backend is not ready (starting or recovering); retry shortly",
                           "service_unavailable_error", code="not_ready", headers=retry)
        if self.inflight >= self.config.max_pending:
            if fb is not None and policy == "unhealthy+saturated" and fb.stats().healthy:
                return Admission(fb, "saturated")
            self.metrics.rejected.labels("overloaded").inc()
            raise APIError(503, f"the server is at capacity ({self.config.max_pending} requests in flight); "
                                "retry after the time in the Retry-After header",
                           "service_unavailable_error", code="overloaded", headers=retry)
        return Admission(self.backend)
