"""The serving benchmark client (3.5.4) against a fake OpenAI-compatible stream (no server needed)."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from ch03_env.bench import BenchConfig, RequestResult, arrival_delays, main, run_benchmark, summarize
from common.datasets import WorkloadRequest


def fake_stream(chat: bool = False, empty_text_at: int | None = None, status: int = 200):
    """An httpx transport that streams ``max_tokens`` one-token chunks, then a usage chunk, then [DONE]."""

    def handler(request: httpx.Request) -> httpx.Response:
        if status != 200:
            return httpx.Response(status, text="model not found")
        body = json.loads(request.content)
        n = body["max_tokens"]
        lines = []
        if chat:
            lines.append({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        for i in range(n):
            text = "" if i == empty_text_at else f"t{i} "
            choice = {"index": 0, "delta": {"content": text}} if chat else {"index": 0, "text": text}
            lines.append({"choices": [choice]})
        lines.append({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": n}})
        sse = "".join(f"data: {json.dumps(x)}\n\n" for x in lines) + "data: [DONE]\n\n"
        return httpx.Response(200, text=sse, headers={"content-type": "text/event-stream"})

    return httpx.MockTransport(handler)


def requests(n: int = 5) -> list[WorkloadRequest]:
    return [WorkloadRequest(f"r{i}", f"prompt {i}", 10 + i, 3 + i) for i in range(n)]


@pytest.mark.parametrize("chat", [False, True])
def test_bench_counts_one_token_per_chunk_and_reads_usage(chat):
    cfg = BenchConfig(base_url="http://fake:1/v1", endpoint="chat" if chat else "completions", concurrency=2)
    reqs = requests()
    report = run_benchmark(cfg, reqs, transport=fake_stream(chat=chat, empty_text_at=1))
    assert cfg.base_url == "http://fake:1"  # a trailing /v1 is accepted and stripped
    assert all(r.success for r in report.results)
    assert [r.output_tokens for r in report.results] == [q.output_len for q in reqs]
    # an empty-text chunk is still a token step; the chat role chunk is not
    assert [len(r.itl_s) for r in report.results] == [q.output_len - 1 for q in reqs]
    assert report.results[0].text == "t0 t2 "
    s = report.summary
    assert s["completed"] == 5 and s["failed"] == 0
    assert s["output_tokens"] == sum(q.output_len for q in reqs)
    assert s["input_tokens"] == sum(q.prompt_len for q in reqs)


def test_http_errors_are_counted_as_failures_with_the_reason():
    cfg = BenchConfig(base_url="http://fake:1")
    report = run_benchmark(cfg, requests(3), transport=fake_stream(status=404))
    assert report.summary["completed"] == 0 and report.summary["failed"] == 3
    assert "HTTP 404" in report.summary["errors"][0]


def test_summary_percentiles_are_ordered_and_in_milliseconds():
    results = []
    for i in range(10):
        r = RequestResult(f"r{i}", 10, 5, success=True, ttft_s=0.1 * (i + 1), e2e_s=0.1 * (i + 1) + 0.4,
                          output_tokens=5, itl_s=[0.1] * 4)
        results.append(r)
    results.append(RequestResult("bad", 10, 5, success=False, error="boom"))
    s = summarize(results, duration_s=2.0)
    assert s["completed"] == 10 and s["failed"] == 1 and s["errors"] == ["boom"]
    assert s["request_throughput"] == pytest.approx(5.0)
    assert s["output_throughput"] == pytest.approx(25.0)
    assert s["ttft_ms"]["p50"] == pytest.approx(550.0)
    assert s["ttft_ms"]["p50"] <= s["ttft_ms"]["p90"] <= s["ttft_ms"]["p99"]
    assert s["tpot_ms"]["mean"] == pytest.approx(100.0)  # (e2e - ttft) / (5 - 1)
    assert s["itl_ms"]["p99"] == pytest.approx(100.0)


def test_poisson_arrivals_are_seeded_with_the_requested_mean_gap():
    a = arrival_delays(4000, rate=4.0, seed=3)
    assert a == arrival_delays(4000, rate=4.0, seed=3)
    assert a != arrival_delays(4000, rate=4.0, seed=4)
    assert sum(a) / len(a) == pytest.approx(0.25, rel=0.08)
    assert arrival_delays(3, rate=math.inf, seed=0) == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("kwargs", [{"endpoint": "embeddings"}, {"concurrency": 0}, {"request_rate": 0.0},
                                    {"base_url": "127.0.0.1:8000"}])
def test_bad_config_is_rejected(kwargs):
    with pytest.raises(ValueError):
        BenchConfig(**{"base_url": "http://x:1", **kwargs})


def test_cli_without_a_target_says_what_to_give(capsys):
    assert main([]) == 2
    assert "--base-url" in capsys.readouterr().err


def test_cli_with_unreachable_server_fails_in_one_sentence(capsys):
    from ch03_env.vllm_server import free_port

    rc = main(["--base-url", f"http://127.0.0.1:{free_port()}", "--smoke"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: nothing answers at") and "Traceback" not in err
    assert err.count("\n") == 1
