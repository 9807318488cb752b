"""Run the app under uvicorn, in the foreground (``main``) or on a background thread (tests, benchmarks).

:class:`DrainingServer` flips the app to "draining" the moment shutdown begins (SIGTERM from
Kubernetes, or :meth:`BackgroundServer.stop`): ``/ready`` turns 503 so the load balancer stops
sending traffic, new requests get 503, and requests already streaming run to completion (uvicorn
waits for open connections up to ``shutdown_grace_s``) before the backend is stopped (book 8.9.3).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from ch08_production.state import ServerState


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self.app_state = state
        self.exit_code = 0

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the SIGTERM it drained for, so the process would die "by signal" (-15) after a
        # clean drain; we handled it, so exit with our own code instead (0, or 1 after a backend failure).
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()

    async def shutdown(self, sockets: Any = None) -> None:
        self.app_state.draining = True
        await super().shutdown(sockets)

    def request_exit(self, code: int) -> None:
        """Called by the app when the backend cannot recover: exit non-zero for the orchestrator."""
        self.exit_code = code
        self.should_exit = True


def make_server(app: Any, state: ServerState, host: str, port: int, log_level: str = "warning") -> DrainingServer:
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=int(max(1, state.config.shutdown_grace_s)))
    server = DrainingServer(config, state)
    state.request_exit = server.request_exit
    return server


class BackgroundServer:
    """``with BackgroundServer(app, state, port) as srv: ...`` serves on 127.0.0.1:port in a thread."""

    def __init__(self, app: Any, state: ServerState, port: int, host: str = "127.0.0.1",
                 startup_timeout_s: float = 300.0) -> None:
        self.state = state
        self.server = make_server(app, state, host, port)
        self.url = f"http://{host}:{port}"
        self.startup_timeout_s = startup_timeout_s
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{port}", daemon=True)

    def start(self) -> BackgroundServer:
        self.thread.start()
        end = time.monotonic() + self.startup_timeout_s
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread died during startup (see the log above)")
            if time.monotonic() > end:
                raise TimeoutError(f"the server did not start within {self.startup_timeout_s:g} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Graceful: drain in-flight requests, then stop the backend."""
        self.server.should_exit = True
        self.thread.join(timeout_s)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
