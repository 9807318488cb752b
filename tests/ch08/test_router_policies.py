"""The router (book 8.2.3, 8.2.4): policies as pure bookkeeping, then the ASGI proxy against two tiny fake
OpenAI-style replicas (streaming, health-based ejection, retry on 5xx, 503 when none is left)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
import pytest

from ch08_production.router import Balancer, Router, RouterConfig, affinity_key

A, B, C = "http://a:1", "http://b:1", "http://c:1"


def cfg(policy: str, replicas=(A, B), **kw) -> RouterConfig:
    return RouterConfig(tuple(replicas), policy, **kw)


def test_round_robin_alternates_over_healthy_replicas():
    bal = Balancer(cfg("round_robin", (A, B, C)))
    assert [bal.pick().url for _ in range(6)] == [A, B, C, A, B, C]
    bal.replicas[1].healthy = False
    assert {bal.pick().url for _ in range(4)} == {A, C}


def test_least_outstanding_picks_the_idlest_replica():
    bal = Balancer(cfg("least_outstanding", (A, B, C)))
    bal.replicas[0].outstanding, bal.replicas[1].outstanding, bal.replicas[2].outstanding = 5, 1, 3
    assert bal.pick().url == B


def test_prefix_affinity_is_sticky_and_spreads_different_prefixes():
    bal = Balancer(cfg("prefix_affinity", (A, B, C), prefix_chars=16))
    def key(k: int, tail: str) -> str:
        return affinity_key({"prompt": f"system prompt {k:02d}" + tail}, 16)

    homes = {k: bal.pick(key(k, "x" * 50)).url for k in range(60)}
    for k, url in homes.items():  # same prefix -> same replica, every time
        assert bal.pick(key(k, "a different tail")).url == url
    assert set(Counter(homes.values())) == {A, B, C}


def test_prefix_affinity_moves_only_the_ejected_replicas_keys():
    bal = Balancer(cfg("prefix_affinity", (A, B, C)))
    keys = [f"tenant-{i}" for i in range(90)]
    before = {k: bal.pick(k).url for k in keys}
    bal.replicas[2].healthy = False
    after = {k: bal.pick(k).url for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == C for k in moved)


def test_prefix_affinity_falls_back_when_its_home_is_overloaded():
    bal = Balancer(cfg("prefix_affinity", (A, B), affinity_slack=2))
    home = bal.pick("shared").url
    other = B if home == A else A
    next(r for r in bal.replicas if r.url == home).outstanding = 3
    assert bal.pick("shared").url == other


def test_replicas_are_ejected_after_consecutive_failures_and_readmitted():
    bal = Balancer(cfg("round_robin", eject_after=2))
    r = bal.replicas[0]
    bal.record(r, False)
    assert r.healthy
    bal.record(r, False)
    assert not r.healthy and [x.url for x in bal.healthy()] == [B]
    bal.record(r, True)
    assert r.healthy


def test_affinity_key_uses_the_chat_messages_or_the_prompt():
    assert affinity_key({"prompt": "hello world"}, 5) == "hello"
    chat = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}
    assert affinity_key(chat, 100) == "system:be brief\nuser:hi\n"


def test_bad_config_is_one_clear_error():
    with pytest.raises(ValueError, match="policy must be one of"):
        RouterConfig((A,), "random")
    with pytest.raises(ValueError, match="at least one replica"):
        RouterConfig(())


# --------------------------------------------------------------------------- fake replicas


class FakeReplica:
    """A tiny OpenAI-style ASGI app: /ready, and streaming /v1/completions naming itself in each chunk."""

    def __init__(self, name: str) -> None:
        self.name, self.ready, self.fail_500, self.calls = name, True, False, 0

    async def __call__(self, scope, receive, send) -> None:
        path = scope["path"]
        if path == "/ready":
            status, chunks = (200 if self.ready else 503), [b"{}"]
        elif path.startswith("/v1/"):
            self.calls += 1
            await receive()
            if self.fail_500:
                status, chunks = 500, [b'{"error": "boom"}']
            else:
                status = 200
                chunks = [f"data: {json.dumps({'choices': [{'text': self.name, 'index': 0}]})}\n\n".encode()
                          for _ in range(3)] + [b"data: [DONE]\n\n"]
        else:
            status, chunks = 404, [b"{}"]
        ctype = b"text/event-stream" if status == 200 and path.startswith("/v1/") else b"application/json"
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]})
        for c in chunks:
            await send({"type": "http.response.body", "body": c, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


class HostTransport(httpx.AsyncBaseTransport):
    """Dispatch by URL host to an ASGI app; hosts without an app refuse the connection."""

    def __init__(self, apps: dict[str, FakeReplica]) -> None:
        self.apps = {h: httpx.ASGITransport(app=a) for h, a in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        t = self.apps.get(request.url.host)
        if t is None:
            raise httpx.ConnectError("connection refused", request=request)
        return await t.handle_async_request(request)


def run_router(policy: str, replicas: dict[str, FakeReplica], urls=None, n: int = 6, **kw):
    urls = urls or [f"http://{h}:1" for h in replicas]
    router = Router(RouterConfig(tuple(urls), policy, **kw), transport=HostTransport(replicas))

    async def go():
        await router.check_health()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=router), base_url="http://router") as c:
            rs = [await c.post("/v1/completions", json={"model": "m", "prompt": f"p{i}", "stream": True})
                  for i in range(n)]
            ready = await c.get("/ready")
            metrics = (await c.get("/metrics")).text
        await router.aclose()
        return rs, ready, metrics
    return router, *asyncio.run(go())


def test_router_streams_every_chunk_and_round_robins_between_two_replicas():
    a, b = FakeReplica("a"), FakeReplica("b")
    _, rs, ready, metrics = run_router("round_robin", {"a": a, "b": b})
    assert all(r.status_code == 200 and r.text.count("data:") == 4 for r in rs)
    assert (a.calls, b.calls) == (3, 3)
    assert ready.json() == {"healthy_replicas": 2}
    assert 'llmic_router_requests_total{replica="http://a:1",status="200"} 3.0' in metrics


def test_a_replica_that_fails_its_ready_check_gets_no_traffic():
    a, b = FakeReplica("a"), FakeReplica("b")
    b.ready = False
    router, rs, _, _ = run_router("least_outstanding", {"a": a, "b": b}, eject_after=1)
    assert b.calls == 0 and a.calls == 6
    assert all('"a"' in r.text for r in rs)


def test_a_5xx_is_retried_on_the_other_replica_and_ejects_the_bad_one():
    a, b = FakeReplica("a"), FakeReplica("b")
    a.fail_500 = True
    router, rs, _, metrics = run_router("round_robin", {"a": a, "b": b}, eject_after=1)
    assert all(r.status_code == 200 and '"b"' in r.text for r in rs)
    assert a.calls == 1  # ejected after its first failure
    assert "llmic_router_retries_total 1.0" in metrics


def test_an_unreachable_replica_is_ejected_and_a_dead_fleet_answers_503():
    a = FakeReplica("a")
    _, rs, _, _ = run_router("round_robin", {"a": a}, urls=["http://a:1", "http://dead:1"], eject_after=1)
    assert all(r.status_code == 200 for r in rs)
    _, rs, ready, _ = run_router("round_robin", {}, urls=["http://dead:1"], n=1, eject_after=1)
    assert rs[0].status_code == 503 and rs[0].headers["retry-after"] == "2"
    assert ready.status_code == 503
