"""The load tester's additions to ch03's client (book 8.5): SLO goodput, completeness checks, closed-loop soak."""

from __future__ import annotations

import asyncio
import math

from ch03_env.bench import RequestResult
from ch08_production.loadgen import SLO, goodput, run_closed_loop


def _res(ttft: float, e2e: float, tokens: int, ok: bool = True) -> RequestResult:
    r = RequestResult("r", 10, tokens, success=ok, ttft_s=ttft, e2e_s=e2e, output_tokens=tokens)
    return r


def test_goodput_counts_only_requests_meeting_both_slos():
    slo = SLO(ttft_s=1.0, tpot_s=0.1)
    results = [_res(0.5, 0.5 + 9 * 0.05, 10),  # good
               _res(1.5, 1.5 + 9 * 0.05, 10),  # TTFT too slow
               _res(0.5, 0.5 + 9 * 0.2, 10),  # TPOT too slow
               _res(math.nan, math.nan, 0, ok=False)]  # failed
    g = goodput(results, duration_s=2.0, slo=slo)
    assert g["goodput_req_s"] == 0.5 and g["goodput_tok_s"] == 5.0 and g["slo_attainment"] == 0.25


def test_closed_loop_checks_every_stream_is_complete(serve, fake_backend_cls, embedded_tokenizer):
    backend = fake_backend_cls(embedded_tokenizer, model_name="tiny", delay_s=0.005)
    srv = serve(backend)
    report = asyncio.run(run_closed_loop(srv.url, clients=4, duration_s=1.5, model="tiny", max_tokens=(3, 6)))
    assert report.statuses == {200: len(report.outcomes)} and len(report.outcomes) >= 4
    assert all(o.complete and o.usage_tokens == o.chunks and o.finish_reason == "length" for o in report.outcomes)
    assert not backend.active
