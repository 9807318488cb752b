"""Reliability (book 8.9) under injected faults: client disconnects, backend failures, shutdown while
streaming, overload, timeouts and degradation to a fallback backend."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest


def _wait(cond, timeout=20.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _stream_lines(url, body, n_lines=None):
    """Open a completions stream; return the data lines (stop after n_lines, closing the connection)."""
    lines = []
    with httpx.Client(timeout=60) as c, c.stream("POST", url + "/v1/completions", json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                lines.append(line[6:])
                if n_lines is not None and len(lines) >= n_lines:
                    break
    return lines


BODY = {"model": "tiny", "prompt": "hi", "max_tokens": 200, "stream": True}


def test_client_disconnect_mid_stream_aborts_and_frees_blocks(serve, fake_backend_cls, embedded_tokenizer):
    backend = fake_backend_cls(embedded_tokenizer, delay_s=0.02)
    srv = serve(backend)
    lines = _stream_lines(srv.url, BODY, n_lines=3)  # read three chunks, then hang up
    assert len(lines) == 3
    _wait(lambda: backend.aborted and not backend.active, what="the backend request to be aborted")
    assert backend.stats().num_used_blocks == 0
    assert srv.state.inflight == 0


def test_client_disconnect_frees_the_transformers_worker(tiny_hf_server):
    backend = tiny_hf_server.state.backend
    body = {**BODY, "max_tokens": 250, "ignore_eos": True}
    with httpx.Client(timeout=60) as c, c.stream("POST", tiny_hf_server.url + "/v1/completions", json=body,
                                                 headers={"Authorization": "Bearer sk-test-alpha-0001"}) as r:
        next(line for line in r.iter_lines() if line.startswith("data: "))
    _wait(lambda: backend.stats().num_running == 0 and tiny_hf_server.state.inflight == 0,
          what="the transformers request to stop")


def test_backend_failure_gives_clean_errors_flips_ready_then_recovers(serve, fake_backend_cls, embedded_tokenizer):
    backend = fake_backend_cls(embedded_tokenizer, fail_after=2)
    srv = serve(backend, max_restarts=2)
    r = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 5}, timeout=30)
    assert r.status_code == 500
    err = r.json()["error"]
    assert err["type"] == "server_error" and err["code"] == "backend_error" and "retry" in err["message"]
    assert httpx.get(srv.url + "/ready").status_code == 503
    assert httpx.get(srv.url + "/health").status_code == 200  # alive: it is recovering
    _wait(lambda: httpx.get(srv.url + "/ready").status_code == 200, what="recovery")
    assert backend.restarts == 1
    ok = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 5}, timeout=30)
    assert ok.status_code == 200


def test_backend_failure_mid_stream_ends_the_stream_with_an_error_event(serve, fake_backend_cls,
                                                                        embedded_tokenizer):
    backend = fake_backend_cls(embedded_tokenizer, fail_after=3)
    srv = serve(backend)
    lines = _stream_lines(srv.url, BODY)
    assert lines[-1] == "[DONE]"
    assert json.loads(lines[-2])["error"]["code"] == "backend_error"
    assert not backend.active


def test_unrecoverable_backend_makes_the_server_exit_non_zero(serve, fake_backend_cls, embedded_tokenizer):
    backend = fake_backend_cls(embedded_tokenizer, fail_after=0, restart_ok=False)
    srv = serve(backend, max_restarts=1)
    r = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 3}, timeout=30)
    assert r.status_code == 500
    srv.thread.join(timeout=30)
    assert not srv.thread.is_alive()
    assert srv.server.exit_code == 1 and srv.state.fatal


def test_shutdown_while_streaming_lets_in_flight_requests_finish(serve, fake_backend_cls, embedded_tokenizer):
    backend = fake_backend_cls(embedded_tokenizer, delay_s=0.02)
    srv = serve(backend, shutdown_grace_s=30)
    result: dict = {}

    def client():
        result["lines"] = _stream_lines(srv.url, {**BODY, "max_tokens": 60})

    t = threading.Thread(target=client)
    t.start()
    _wait(lambda: backend.active, what="the stream to start")
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    _wait(lambda: srv.state.draining, what="draining")
    t.join(30)
    stopper.join(30)
    lines = result["lines"]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(x) for x in lines[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and len(chunks) == 60
    assert not backend.aborted and not srv.thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url + "/health")


def test_admission_control_returns_503_with_retry_after(serve, fake_backend_cls, embedded_tokenizer):
    backend = fake_backend_cls(embedded_tokenizer, delay_s=0.02)
    srv = serve(backend, max_pending=1, retry_after_s=3)
    t = threading.Thread(target=_stream_lines, args=(srv.url, {**BODY, "max_tokens": 50}))
    t.start()
    _wait(lambda: backend.active, what="the first request")
    r = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 2})
    assert r.status_code == 503 and r.headers["retry-after"] == "3"
    assert r.json()["error"]["code"] == "overloaded"
    t.join(30)


def test_per_request_timeout_aborts_with_504(serve, fake_backend_cls, embedded_tokenizer):
    backend = fake_backend_cls(embedded_tokenizer, delay_s=0.05)
    srv = serve(backend, request_timeout_s=0.3)
    r = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 100}, timeout=30)
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error"
    _wait(lambda: not backend.active, what="abort after timeout")
    assert backend.aborted


def test_degrades_to_fallback_backend_when_primary_is_unhealthy(serve, fake_backend_cls, embedded_tokenizer):
    primary = fake_backend_cls(embedded_tokenizer, fail_after=0, restart_ok=False)
    fallback = fake_backend_cls(embedded_tokenizer)
    srv = serve(primary, fallback=fallback, fallback_policy="unhealthy", max_restarts=3)
    first = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 3})
    assert first.status_code == 500  # the request that met the failure
    r = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 3})
    assert r.status_code == 200 and fallback.seen
    assert 'llmic:fallback_requests_total{reason="unhealthy"} 1.0' in httpx.get(srv.url + "/metrics").text


def test_traceparent_is_accepted_propagated_and_returned(serve, fake_backend_cls, embedded_tokenizer):
    backend = fake_backend_cls(embedded_tokenizer)
    srv = serve(backend)
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 2},
                   headers={"traceparent": tp, "x-request-id": "req-abc"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "req-abc"
    sent = backend.seen[-1].traceparent
    assert sent.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-") and not sent.endswith("00f067aa0ba902b7-01")
    assert r.headers["traceparent"] == sent
