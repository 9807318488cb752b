"""The router in front of two real replicas of our server (tiny model, loopback): the official openai client
works through it unchanged, both replicas serve, and when one replica dies mid-run the router ejects it and
every later request still succeeds (book 8.2.3, 8.2.4)."""

from __future__ import annotations

import time

import openai
import pytest

from ch08_production import promstack as ps
from ch08_production.router import RouterConfig
from ch08_production.router_bench import ThreadedRouter


@pytest.fixture
def two_replicas(tiny_model_dir):
    servers = [ps.serve_in_thread(str(tiny_model_dir), "tiny", cost_per_hour=1.0) for _ in range(2)]
    yield servers
    for s in servers:
        s.stop(timeout_s=30)


@pytest.mark.slow
def test_openai_client_through_the_router_survives_a_replica_failure(two_replicas):
    cfg = RouterConfig(tuple(s.url for s in two_replicas), "least_outstanding", eject_after=1,
                       health_interval_s=0.5)
    threaded = ThreadedRouter(cfg)
    with threaded as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        for i in range(4):
            stream = client.completions.create(model="tiny", prompt=f"hello {i}", max_tokens=4, stream=True)
            assert sum(1 for _ in stream) >= 1
        deadline = time.monotonic() + 10
        while any(r.outstanding for r in threaded.router.balancer.replicas) and time.monotonic() < deadline:
            time.sleep(0.05)
        served = [r.served for r in threaded.router.balancer.replicas]
        assert sum(served) == 4 and all(n >= 1 for n in served)
        two_replicas[0].stop(timeout_s=30)  # replica 0 goes away
        for i in range(4):
            out = client.completions.create(model="tiny", prompt=f"after {i}", max_tokens=4)
            assert out.choices[0].text is not None
        dead, alive = threaded.router.balancer.replicas
        # The router books a request as served when its response has been relayed, which can finish a
        # moment after the client has read the last byte: wait for the in-flight count to drain.
        deadline = time.monotonic() + 10
        while alive.outstanding and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not dead.healthy and alive.healthy
        assert alive.served >= served[1] + 4
