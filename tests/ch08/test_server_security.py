"""Security (book 8.8): API keys on every /v1 route, per-key token-bucket limits with Retry-After, the
content filter, and privacy-by-default logging."""

from __future__ import annotations

import logging

import httpx
import pytest

from ch08_production.security import APIKeyStore, BlocklistFilter, RateLimiter, TokenBucket, redact

K1, K2 = "sk-key-one-111111", "sk-key-two-222222"


def test_every_v1_route_needs_a_key(tiny_hf_server):
    from fastapi.routing import APIRoute

    app_routes = tiny_hf_server.server.config.app.routes
    v1 = [(m, r.path) for r in app_routes if isinstance(r, APIRoute) and r.path.startswith("/v1")
          for m in r.methods]
    assert {p for _, p in v1} == {"/v1/completions", "/v1/chat/completions", "/v1/models"}
    for method, path in v1 + [("GET", "/v1/unknown")]:
        for headers in ({}, {"Authorization": "Bearer sk-not-a-valid-key"}, {"Authorization": "Basic abc"}):
            r = httpx.request(method, tiny_hf_server.url + path, headers=headers, json={"model": "tiny"})
            assert r.status_code == 401, (method, path, headers)
            assert r.json()["error"]["type"] == "authentication_error"
            assert r.headers["www-authenticate"] == "Bearer"
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(tiny_hf_server.url + path).status_code == 200


def test_key_store_keeps_only_digests_and_reads_env_and_file(tmp_path):
    f = tmp_path / "keys"
    f.write_text("# mounted secret\nsk-from-file-0001\n")
    store = APIKeyStore.from_sources(env={"LLMIC_API_KEYS": "sk-from-env-0001, sk-from-env-0002"}, key_file=f)
    assert len(store.digests) == 3
    assert all(isinstance(d, bytes) and b"sk-" not in d for d in store.digests)
    assert store.check("sk-from-file-0001") and store.check("sk-from-env-0002")
    assert store.check("sk-from-env-000") is None and store.check(None) is None
    assert store.check("sk-from-env-0001") != store.check("sk-from-env-0002")  # distinct key ids
    with pytest.raises(ValueError, match="does not exist"):
        APIKeyStore.from_sources(env={}, key_file=tmp_path / "missing")


def test_token_bucket_refills_at_its_rate():
    b = TokenBucket(capacity=2, rate=1.0, stamp=0.0)
    b.take(2, now=0.0)
    assert b.wait_time(1, now=0.0) == pytest.approx(1.0)
    assert b.wait_time(1, now=0.5) == pytest.approx(0.5)
    assert b.wait_time(1, now=1.0) == 0.0
    assert b.wait_time(3, now=5.0) == float("inf")


def test_rate_limiter_is_per_key_with_a_fake_clock():
    now = [0.0]
    lim = RateLimiter(requests_per_minute=2, tokens_per_minute=600, clock=lambda: now[0])
    assert lim.acquire("a", 10).allowed and lim.acquire("a", 10).allowed
    d = lim.acquire("a", 10)
    assert not d.allowed and d.retry_after_s == pytest.approx(30.0) and "requests per minute" in d.reason
    assert lim.acquire("b", 10).allowed  # another key has its own buckets
    now[0] = 30.0
    assert lim.acquire("a", 10).allowed
    big = lim.acquire("b", 10_000)
    assert not big.allowed and "lower max_tokens" in big.reason


def _post(url, key, **body):
    return httpx.post(url + "/v1/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "tiny", "prompt": "hi", "max_tokens": 4, **body}, timeout=30)


def test_429_with_retry_after_and_limits_are_per_key(serve, fake_backend_cls, embedded_tokenizer):
    srv = serve(fake_backend_cls(embedded_tokenizer), keys=[K1, K2], requests_per_minute=2)
    assert [_post(srv.url, K1).status_code for _ in range(2)] == [200, 200]
    r = _post(srv.url, K1)
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert int(r.headers["retry-after"]) >= 1
    assert _post(srv.url, K2).status_code == 200
    metrics = httpx.get(srv.url + "/metrics").text
    assert 'llmic:rejected_requests_total{reason="rate_limit"} 1.0' in metrics


def test_token_limit_counts_prompt_plus_max_tokens(serve, fake_backend_cls, embedded_tokenizer):
    srv = serve(fake_backend_cls(embedded_tokenizer), keys=[K1], tokens_per_minute=60)
    assert _post(srv.url, K1, max_tokens=40).status_code == 200  # ~41 tokens reserved, unused part refunded
    r = _post(srv.url, K1, max_tokens=40)
    assert r.status_code == 429 and "tokens per minute" in r.json()["error"]["message"]
    assert _post(srv.url, K1, max_tokens=200).json()["error"]["message"].startswith("this request needs")


def test_default_content_filter_refuses_and_allows():
    f = BlocklistFilter()
    assert not f.check("How to make a bomb?").allowed
    assert f.check("How to make a cake?").allowed


def test_redaction_masks_personal_data():
    out = redact("mail bob@example.com, call +1 415 555 0100, card 4111 1111 1111 1111, key sk-abcdef123456")
    assert "bob@" not in out and "4111" not in out and "555" not in out and "sk-abcdef" not in out
    assert "[EMAIL]" in out and "[CARD]" in out and "[KEY]" in out


@pytest.mark.parametrize("log_prompts", [False, True])
def test_prompts_are_not_logged_unless_enabled_then_redacted(serve, fake_backend_cls, embedded_tokenizer, caplog,
                                                             log_prompts):
    srv = serve(fake_backend_cls(embedded_tokenizer), log_prompts=log_prompts)
    logger = logging.getLogger("ch08_production")
    logger.addHandler(caplog.handler)  # directly: the server's own setup_logging may stop propagation
    try:
        with caplog.at_level(logging.INFO, logger="ch08_production"):
            r = _post(srv.url, "none", prompt="my secret is alice@corp.example")
            assert r.status_code == 200
    finally:
        logger.removeHandler(caplog.handler)
    records = [rec for rec in caplog.records if rec.getMessage() == "request finished"]
    assert records, "the request log line is missing"
    dumped = " ".join(str(getattr(rec, "fields", {})) for rec in caplog.records)
    assert "alice@corp.example" not in dumped
    assert ("[EMAIL]" in dumped) == log_prompts
