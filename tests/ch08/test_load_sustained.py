"""Load (book 8.5, 8.9): 16 concurrent streaming clients for 60 s on the embedded model through ch05's
engine: zero 5xx, every response complete, and no KV blocks leaked afterwards."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ch08_production.loadgen import run_closed_loop

CLIENTS, DURATION_S = 16, 60.0


@pytest.mark.slow
def test_sixteen_streaming_clients_for_a_minute(embedded_engine_server):
    srv = embedded_engine_server
    report = asyncio.run(run_closed_loop(srv.url, clients=CLIENTS, duration_s=DURATION_S, model="smollm2-135m",
                                         max_tokens=(8, 32)))
    statuses = report.statuses
    assert report.outcomes and set(statuses) == {200}, statuses
    incomplete = [o for o in report.outcomes if not o.complete]
    assert not incomplete, incomplete[:3]
    assert all(o.usage_tokens == o.chunks for o in report.outcomes), "usage disagrees with the tokens streamed"
    assert len(report.outcomes) >= CLIENTS  # every client finished at least one request

    backend = srv.state.backend
    end = time.monotonic() + 30
    while time.monotonic() < end and (backend.stats().num_used_blocks or srv.state.inflight):
        time.sleep(0.05)
    stats = backend.stats()
    assert stats.num_used_blocks == 0 and stats.num_running == 0 and srv.state.inflight == 0
    backend.engine.scheduler.block_manager.check_invariants()

    text = httpx.get(srv.url + "/metrics").text
    http = [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == "http_requests_total"]
    assert not [s for s in http if s.labels["status"].startswith("5")]
