"""Observability (book 8.4, 8.7): vLLM-named Prometheus metrics with vLLM's labels, HTTP status counts,
fair-share cost accounting, structured JSON logs."""

from __future__ import annotations

import io
import json
import logging

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ch08_production.metrics import METRIC_NAMES, CostMeter
from ch08_production.observe import JsonFormatter, log, parse_traceparent, setup_logging


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_use_vllm_names_and_labels(serve, fake_backend_cls, embedded_tokenizer):
    srv = serve(fake_backend_cls(embedded_tokenizer, model_name="tiny"), cost_per_hour=3.6)
    for stream in (False, True):
        r = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": "a b c", "max_tokens": 5,
                                                          "stream": stream})
        assert r.status_code == 200
    httpx.post(srv.url + "/v1/completions", json={"model": "nope", "prompt": "x"})
    text = httpx.get(srv.url + "/metrics").text
    samples = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
    for name in METRIC_NAMES:
        assert any(k == name or k.startswith(name + "_") for k in samples), f"{name} missing from /metrics"
    gen = samples["vllm:generation_tokens_total"]
    assert gen.value == 10 and gen.labels == {"model_name": "tiny", "engine": "0"}
    assert samples["vllm:prompt_tokens_total"].value > 0
    fams = _families(text)
    ttft = fams["vllm:time_to_first_token_seconds"]
    assert ttft.type == "histogram"
    count = [s for s in ttft.samples if s.name.endswith("_count")][0]
    assert count.value == 2
    itl_count = [s for s in fams["vllm:inter_token_latency_seconds"].samples if s.name.endswith("_count")][0]
    assert itl_count.value == 8  # 4 gaps per 5-token request
    http = {(s.labels["handler"], s.labels["status"]): s.value for s in fams["http_requests"].samples
            if s.name == "http_requests_total"}
    assert http[("/v1/completions", "200")] == 2 and http[("/v1/completions", "404")] == 1
    assert samples["llmic:cost_per_hour_dollars"].value == 3.6
    assert samples["llmic:cost_dollars_total"].value > 0
    cost_sum = [s for s in fams["llmic:request_cost_dollars"].samples if s.name.endswith("_sum")][0]
    assert 0 < cost_sum.value <= samples["llmic:cost_dollars_total"].value
    assert 'vllm:request_success_total{engine="0",finished_reason="length",model_name="tiny"} 2.0' in text


def test_cost_meter_shares_time_between_concurrent_requests():
    now = [0.0]
    m = CostMeter(3600.0, clock=lambda: now[0])  # $1 per second
    a = m.start()
    now[0] = 1.0
    b = m.start()  # a ran alone for 1 s
    now[0] = 3.0  # both ran 2 s together
    cost_a = m.finish(a)
    now[0] = 4.0  # b alone 1 s
    cost_b = m.finish(b)
    assert abs(cost_a - 2.0) < 1e-9 and abs(cost_b - 2.0) < 1e-9  # 1 + 2/2, 2/2 + 1
    assert abs(cost_a + cost_b - 4.0) < 1e-9  # the busy time's bill, exactly


def test_json_log_lines_carry_fields():
    buf = io.StringIO()
    before = logging.getLogger("ch08_production")
    saved = (list(before.handlers), before.level, before.propagate)
    logger = setup_logging("info", True, stream=buf)
    try:
        log(logger, logging.INFO, "request finished", request_id="req-1", trace_id="ab" * 16)
    finally:  # leave the logger as other tests (caplog) expect it: setup_logging stops propagation
        logger.handlers[:], logger.level, logger.propagate = saved
    line = json.loads(buf.getvalue().strip())
    assert line["msg"] == "request finished" and line["request_id"] == "req-1" and line["level"] == "info"
    assert line["ts"].endswith("Z")
    assert isinstance(JsonFormatter(), logging.Formatter)


def test_traceparent_parsing_follows_w3c():
    assert parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == (
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")
    for bad in (None, "", "garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01"):
        assert parse_traceparent(bad) is None


def test_engine_metrics_count_prefix_cache_tokens_choices_and_structured_requests(serve, tiny_model_dir):
    """ch05's engine behind the server: the prefix cache in tokens under vLLM's names, the n histogram, and
    our structured-output counter by kind, all read off /metrics after real requests."""
    from ch08_production.backends.engine import EngineBackend

    backend = EngineBackend(str(tiny_model_dir), "tiny", max_num_seqs=4, kv_cache_mib=4, block_size=16,
                            enable_prefix_caching=True)
    srv = serve(backend)
    system = "one two three four five six seven eight nine ten " * 8     # well over two 16-token blocks
    for suffix in ("alpha", "beta"):
        r = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": system + suffix, "max_tokens": 2,
                                                          "temperature": 0})
        assert r.status_code == 200, r.text
    r = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": "pick", "max_tokens": 4, "n": 2,
                                                      "temperature": 1.0, "seed": 3,
                                                      "structured_outputs": {"choice": ["yes", "no"]}})
    assert r.status_code == 200, r.text
    assert sorted(c["text"] in ("yes", "no") for c in r.json()["choices"]) == [True, True]
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(httpx.get(srv.url + "/metrics").text) for s in f.samples}
    engine_labels = (("engine", "0"), ("model_name", "tiny"))
    queries = samples[("vllm:prefix_cache_queries_total", engine_labels)]
    hits = samples[("vllm:prefix_cache_hits_total", engine_labels)]
    stats = backend.engine.stats()
    assert (queries, hits) == (stats.prefix_cache_queries, stats.prefix_cache_hits)
    assert hits >= 32 and hits % 16 == 0 and queries > hits   # the second prompt found the shared blocks
    assert samples[("vllm:request_params_n_count", engine_labels)] == 3
    assert samples[("vllm:request_params_n_bucket", (*engine_labels[:1], ("le", "1.0"), engine_labels[1]))] == 2
    assert samples[("llmic:structured_output_requests_total", (("kind", "choice"),))] == 1
    assert samples[("llmic:structured_output_requests_total", (("kind", "json_schema"),))] == 0
