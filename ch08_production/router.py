"""A small load-balancing router in front of N OpenAI-compatible replicas (book 8.2.3, 8.2.4).

Policies (:data:`POLICIES`), all over the replicas that are currently healthy:

* ``round_robin``        - next replica in turn; ignores how busy each one is;
* ``least_outstanding``  - the replica with the fewest requests in flight *through this router*
                           (LLM requests vary 100x in length, so counting beats turn-taking);
* ``prefix_affinity``    - rendezvous (highest-random-weight) hash of the prompt's first
                           ``prefix_chars`` characters, so requests sharing a system prompt land where
                           its KV blocks are already cached; bounded: if that replica has more than
                           ``affinity_slack`` requests above the least-loaded one, fall back to least
                           outstanding. Ejecting a replica moves only its own keys.

Health: an active check polls every replica's ``/ready`` each ``health_interval_s``; a replica is
ejected after ``eject_after`` consecutive failures (active or passive: connection errors and 5xx on
proxied calls) and readmitted on its next successful check. A request that fails before any byte
reached the client is retried once on another replica.

Run::

    python -m ch08_production.router --replica http://127.0.0.1:8001 --replica http://127.0.0.1:8002 \
        --policy least_outstanding --port 8000
    python -m ch08_production.router_bench --smoke      # two replicas of our server, every policy measured
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from common.cli import make_parser

POLICIES = ("round_robin", "least_outstanding", "prefix_affinity")


class NoHealthyReplica(RuntimeError):
    """Every replica is ejected: the router answers 503."""


@dataclass(slots=True)
class Replica:
    url: str
    outstanding: int = 0
    failures: int = 0  # consecutive
    healthy: bool = True
    served: int = 0


@dataclass
class RouterConfig:
    replicas: tuple[str, ...]
    policy: str = "least_outstanding"
    prefix_chars: int = 256
    affinity_slack: int = 4
    eject_after: int = 2
    health_interval_s: float = 2.0
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if not self.replicas:
            raise ValueError("give at least one replica URL")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if self.eject_after < 1 or self.prefix_chars < 1 or self.affinity_slack < 0:
            raise ValueError("eject_after and prefix_chars must be >= 1, affinity_slack >= 0")
        self.replicas = tuple(u.rstrip("/") for u in self.replicas)


def affinity_key(body: dict[str, Any], prefix_chars: int) -> str:
    """The text a prefix cache would share: the prompt, or the chat messages rendered in order."""
    if "messages" in body:
        text = "".join(f"{m.get('role')}:{m.get('content')}\n" for m in body.get("messages") or [])
    else:
        prompt = body.get("prompt", "")
        text = prompt if isinstance(prompt, str) else json.dumps(prompt)
    return text[:prefix_chars]


def _weight(key: str, url: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{url}|{key}".encode(), digest_size=8).digest(), "big")


class Balancer:
    """The policy and the replica table; pure bookkeeping, no I/O (unit-testable)."""

    def __init__(self, cfg: RouterConfig) -> None:
        self.cfg = cfg
        self.replicas = [Replica(u) for u in cfg.replicas]
        self._turn = itertools.count()

    def healthy(self) -> list[Replica]:
        return [r for r in self.replicas if r.healthy]

    def pick(self, key: str = "", exclude: Sequence[Replica] = ()) -> Replica:
        pool = [r for r in self.healthy() if r not in exclude]
        if not pool:
            raise NoHealthyReplica("no healthy replica")
        if self.cfg.policy == "round_robin":
            return pool[next(self._turn) % len(pool)]
        fewest = min(r.outstanding for r in pool)
        tied = [r for r in pool if r.outstanding == fewest]
        least = tied[next(self._turn) % len(tied)]  # rotate among ties: an idle fleet still shares work
        if self.cfg.policy == "least_outstanding":
            return least
        home = max(pool, key=lambda r: _weight(key, r.url))
        return home if home.outstanding - least.outstanding <= self.cfg.affinity_slack else least

    def record(self, replica: Replica, ok: bool) -> None:
        """A health signal: success readmits, ``eject_after`` failures in a row eject."""
        if ok:
            replica.failures = 0
            replica.healthy = True
        else:
            replica.failures += 1
            if replica.failures >= self.cfg.eject_after:
                replica.healthy = False


@dataclass
class RouterMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter("llmic_router_requests", "Requests routed, by replica and status.",
                                ("replica", "status"), registry=r)
        self.retries = Counter("llmic_router_retries", "Requests retried on another replica.", registry=r)
        self.outstanding = Gauge("llmic_router_outstanding", "Requests in flight per replica.", ("replica",),
                                 registry=r)
        self.healthy = Gauge("llmic_router_replica_healthy", "1 when the replica is in rotation.", ("replica",),
                             registry=r)


class Router:
    """The ASGI app: ``/v1/*`` proxied (streaming) to a replica chosen by :class:`Balancer`."""

    def __init__(self, cfg: RouterConfig, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.cfg = cfg
        self.balancer = Balancer(cfg)
        self.metrics = RouterMetrics()
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(cfg.timeout_s, connect=5.0), transport=transport,
                                        limits=httpx.Limits(max_connections=512, max_keepalive_connections=64))
        self._health_task: asyncio.Task | None = None

    async def check_health(self) -> None:
        """One round of active health checks (``GET /ready`` on every replica)."""
        async def probe(r: Replica) -> None:
            try:
                ok = (await self.client.get(r.url + "/ready", timeout=3.0)).status_code == 200
            except httpx.HTTPError:
                ok = False
            self.balancer.record(r, ok)
            self.metrics.healthy.labels(r.url).set(1 if r.healthy else 0)
        await asyncio.gather(*(probe(r) for r in self.balancer.replicas))

    async def _health_loop(self) -> None:
        while True:
            await self.check_health()
            await asyncio.sleep(self.cfg.health_interval_s)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path == "/health":
            await _respond(send, 200, {"status": "ok"})
        elif path == "/ready":
            n = len(self.balancer.healthy())
            await _respond(send, 200 if n else 503, {"healthy_replicas": n})
        elif path == "/metrics":
            await _respond(send, 200, generate_latest(self.metrics.registry), "text/plain; version=0.0.4")
        elif path.startswith("/v1/"):
            body = b""
            while True:
                msg = await receive()
                body += msg.get("body", b"")
                if not msg.get("more_body"):
                    break
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                       if k.lower() in (b"authorization", b"content-type", b"x-request-id", b"traceparent")}
            await self.proxy(method, path, body, headers, send)
        else:
            await _respond(send, 404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await self.check_health()
                self._health_task = asyncio.create_task(self._health_loop())
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        await self.client.aclose()

    async def proxy(self, method: str, path: str, body: bytes, headers: dict[str, str], send: Any) -> None:
        try:
            key = affinity_key(json.loads(body or b"{}"), self.cfg.prefix_chars)
        except (ValueError, AttributeError):
            key = ""
        tried: list[Replica] = []
        for _attempt in range(2):
            try:
                replica = self.balancer.pick(key, exclude=tried)
            except NoHealthyReplica:
                break
            tried.append(replica)
            if await self._forward(replica, method, path, body, headers, send):
                return
            self.metrics.retries.inc()
        await _respond(send, 503, {"error": {"message": "no healthy replica could serve the request",
                                             "type": "unavailable"}}, extra=[(b"retry-after", b"2")])

    async def _forward(self, r: Replica, method: str, path: str, body: bytes, headers: dict[str, str],
                       send: Any) -> bool:
        """Stream one replica's answer to the client; False when it failed before sending anything."""
        r.outstanding += 1
        self.metrics.outstanding.labels(r.url).set(r.outstanding)
        started = False
        try:
            req = self.client.build_request(method, r.url + path, content=body, headers=headers)
            resp = await self.client.send(req, stream=True)
            try:
                if resp.status_code >= 500:
                    self.balancer.record(r, ok=False)
                    self.metrics.requests.labels(r.url, str(resp.status_code)).inc()
                    return False
                self.balancer.record(r, ok=True)
                hdrs = [(k.encode(), v.encode()) for k, v in resp.headers.items()
                        if k.lower() in ("content-type", "retry-after", "x-request-id")]
                await send({"type": "http.response.start", "status": resp.status_code,
                            "headers": hdrs + [(b"x-routed-to", r.url.encode())]})
                started = True
                async for chunk in resp.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                r.served += 1
                self.metrics.requests.labels(r.url, str(resp.status_code)).inc()
                return True
            finally:
                await resp.aclose()
        except httpx.HTTPError:
            self.balancer.record(r, ok=False)
            self.metrics.requests.labels(r.url, "error").inc()
            if started:  # mid-stream: the client already has a partial answer; end it
                await send({"type": "http.response.body", "body": b""})
                return True
            return False
        finally:
            r.outstanding -= 1
            self.metrics.outstanding.labels(r.url).set(r.outstanding)


async def _respond(send: Any, status: int, payload: dict | bytes, content_type: str = "application/json",
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode())] + (extra or [])})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = make_parser("python -m ch08_production.router", __doc__)
    parser.add_argument("--replica", action="append", default=[], help="replica base URL (repeat)")
    parser.add_argument("--policy", default="least_outstanding", choices=POLICIES)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--prefix-chars", type=int, default=256)
    parser.add_argument("--health-interval-s", type=float, default=2.0)
    args = parser.parse_args(argv)
    try:
        cfg = RouterConfig(tuple(args.replica), args.policy, prefix_chars=args.prefix_chars,
                           health_interval_s=args.health_interval_s)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(Router(cfg), host=args.host, port=args.port, log_level="warning", lifespan="on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
