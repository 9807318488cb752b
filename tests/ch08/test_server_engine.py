"""The default backend, ch05's continuous-batching engine, behind the server: the same tokens as the engine
called directly, KV blocks freed on disconnect, engine exceptions handled and recovered from."""

from __future__ import annotations

import time

import httpx
import openai


def _wait(cond, timeout=30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_server_matches_the_engine_called_directly(tiny_engine_server):
    backend = tiny_engine_server.state.backend
    tok = backend.tokenizer
    prompts = ["Once upon a time", "The quick brown fox", "1 2 3 4"]
    client = openai.OpenAI(base_url=tiny_engine_server.url + "/v1", api_key="none", max_retries=0)
    served = [client.completions.create(model="tiny", prompt=p, max_tokens=12, temperature=0).choices[0].text
              for p in prompts]

    from ch05_scheduling.engine import LLMEngine
    from ch05_scheduling.sequence import SamplingParams

    direct = LLMEngine(backend.engine.config, model=backend.engine.model, tokenizer=tok)
    outs = direct.generate([tok(p)["input_ids"] for p in prompts], SamplingParams(max_tokens=12, temperature=0.0))
    assert served == [o.text for o in outs]


def test_concurrent_streams_are_batched_and_complete(tiny_engine_server):
    import concurrent.futures

    client = openai.OpenAI(base_url=tiny_engine_server.url + "/v1", api_key="none", max_retries=0)

    def one(i: int) -> tuple[int, str | None]:
        chunks = list(client.completions.create(model="tiny", prompt=f"request {i}", max_tokens=20, stream=True,
                                                temperature=0.8, seed=i, extra_body={"ignore_eos": True}))
        return len([c for c in chunks if c.choices]), chunks[-1].choices[0].finish_reason

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(one, range(6)))
    assert all(fin == "length" for _, fin in results)
    assert _wait(lambda: tiny_engine_server.state.backend.stats().num_used_blocks == 0)


def test_disconnect_mid_stream_frees_kv_blocks(tiny_engine_server):
    backend = tiny_engine_server.state.backend
    body = {"model": "tiny", "prompt": "a long story", "max_tokens": 200, "stream": True, "ignore_eos": True}
    with httpx.Client(timeout=60) as c, c.stream("POST", tiny_engine_server.url + "/v1/completions", json=body) as r:
        lines = r.iter_lines()
        seen = 0
        for line in lines:
            if line.startswith("data: "):
                seen += 1
                if seen == 3:
                    assert backend.stats().num_used_blocks > 0  # the request holds blocks while it streams
                    break
    assert _wait(lambda: backend.stats().num_used_blocks == 0 and backend.stats().num_running == 0)
    assert tiny_engine_server.state.inflight == 0


def test_engine_exception_fails_requests_cleanly_and_recovers(tiny_engine_server, monkeypatch):
    backend = tiny_engine_server.state.backend
    url = tiny_engine_server.url

    def boom(*_a, **_k):
        raise RuntimeError("injected fault in engine.step")

    monkeypatch.setattr(backend.engine, "step", boom)
    r = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 4}, timeout=30)
    assert r.status_code == 500 and r.json()["error"]["code"] == "backend_error"
    assert httpx.get(url + "/ready").status_code == 503
    assert _wait(lambda: httpx.get(url + "/ready").status_code == 200), "the engine did not recover"
    ok = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 4}, timeout=30)
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] >= 1
    assert backend.stats().num_used_blocks == 0
    metrics = httpx.get(url + "/metrics").text
    assert 'llmic:backend_healthy{backend="engine"} 1.0' in metrics
    assert "vllm:kv_cache_usage_perc" in metrics
