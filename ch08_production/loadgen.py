"""Load testing for production (book 8.5.1, 8.5.2), on top of ch03's benchmark client.

ch03's ``ch03_env.bench`` replays a seeded ShareGPT workload with Poisson arrivals and measures
TTFT/TPOT/ITL per request. This module adds what a production load test needs:

* **SLO goodput** (:func:`goodput`): requests per second that met *both* the TTFT and the TPOT SLO;
  throughput that misses the SLO is not capacity you can sell.
* **engine direct** (:func:`run_engine_direct`): the same workload, same arrival schedule, sent to the
  ch05 engine in-process (no HTTP, no JSON, no SSE), so ``server_overhead_pct`` isolates the cost of
  the serving layer.
* **sustained closed loop** (:func:`run_closed_loop`): N clients streaming back to back for a fixed
  time, checking every response is complete (``finish_reason`` then ``[DONE]``, token counts agree):
  the soak test that catches leaks and 5xx under pressure.

    python -m ch08_production.loadgen --base-url http://127.0.0.1:8000 --request-rate 2 --num-requests 32
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ch03_env.bench import (
    BenchConfig,
    RequestResult,
    arrival_delays,
    build_requests,
    print_report,
    run_benchmark,
    summarize,
)
from common.bench import stamp_dict
from common.cli import friendly_errors, make_parser
from common.datasets import WorkloadRequest
from common.report import emit_json, print_table


@dataclass(frozen=True)
class SLO:
    """Latency targets a request must meet to count as good (book 8.1.3)."""

    ttft_s: float = 2.0
    tpot_s: float = 0.25

    def met(self, r: RequestResult) -> bool:
        if not r.success or math.isnan(r.ttft_s) or r.ttft_s > self.ttft_s:
            return False
        return math.isnan(r.tpot_s) or r.tpot_s <= self.tpot_s


def goodput(results: list[RequestResult], duration_s: float, slo: SLO) -> dict[str, float]:
    good = [r for r in results if slo.met(r)]
    return {"goodput_req_s": len(good) / duration_s if duration_s > 0 else math.nan,
            "goodput_tok_s": sum(r.output_tokens for r in good) / duration_s if duration_s > 0 else math.nan,
            "slo_attainment": len(good) / len(results) if results else math.nan,
            "slo_ttft_s": slo.ttft_s, "slo_tpot_s": slo.tpot_s}


# ------------------------------------------------------------------------------------ engine direct


async def run_engine_direct_async(backend: Any, prompts: list[list[int]], requests: list[WorkloadRequest],
                                  rate: float, concurrency: int, seed: int) -> tuple[list[RequestResult], float]:
    """Drive a started backend's ``stream()`` with the same schedule ch03's client uses over HTTP."""
    from ch08_production.backends.base import GenerationRequest, SamplingParams

    sem = asyncio.Semaphore(concurrency)
    t0 = time.perf_counter()

    async def one(i: int, req: WorkloadRequest) -> RequestResult:
        res = RequestResult(req.id, len(prompts[i]), req.output_len)
        params = SamplingParams(max_tokens=req.output_len, temperature=0.0, ignore_eos=True)
        async with sem:
            start = time.perf_counter()
            res.start_s, last, n = start - t0, start, 0
            async for chunk in backend.stream(GenerationRequest(f"direct-{i}", tuple(prompts[i]), params)):
                now = time.perf_counter()
                if n == 0:
                    res.ttft_s = now - start
                else:
                    res.itl_s.append(now - last)
                last, n = now, n + len(chunk.token_ids)
            res.e2e_s, res.output_tokens, res.success = time.perf_counter() - start, n, n > 0
        return res

    tasks = []
    for i, (req, delay) in enumerate(zip(requests, arrival_delays(len(requests), rate, seed), strict=True)):
        if delay:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, req)))
    results = await asyncio.gather(*tasks)
    return list(results), time.perf_counter() - t0


def run_engine_direct(model: str, requests: list[WorkloadRequest], *, rate: float = math.inf, concurrency: int = 8,
                      seed: int = 0, endpoint: str = "completions", **engine_kwargs: Any
                      ) -> tuple[list[RequestResult], float]:
    """Load ch05's engine in this process and run the workload through it (no HTTP)."""
    from ch08_production.backends.engine import EngineBackend
    from common.chat import chat_ids

    async def go() -> tuple[list[RequestResult], float]:
        backend = EngineBackend(model, model, **engine_kwargs)
        await backend.start()
        try:
            tok = backend.tokenizer
            prompts = [chat_ids(tok, r.prompt) if endpoint == "chat" else tok(r.prompt)["input_ids"]
                       for r in requests]
            warm = [WorkloadRequest("warm", "", len(prompts[0]), 2)]
            await run_engine_direct_async(backend, prompts[:1], warm, math.inf, 1, seed)
            return await run_engine_direct_async(backend, prompts, requests, rate, concurrency, seed)
        finally:
            await backend.stop()

    return asyncio.run(go())


# ------------------------------------------------------------------------------------ closed loop soak


@dataclass
class StreamOutcome:
    status: int
    complete: bool = False
    chunks: int = 0
    usage_tokens: int | None = None
    finish_reason: str | None = None
    error: str = ""


async def stream_once(client: Any, url: str, body: dict[str, Any], headers: dict[str, str] | None = None
                      ) -> StreamOutcome:
    """One streaming request, checked for completeness: a finish_reason, then ``[DONE]``, counts agree."""
    async with client.stream("POST", url, json=body, headers=headers or {}) as resp:
        out = StreamOutcome(resp.status_code)
        if resp.status_code != 200:
            out.error = (await resp.aread())[:200].decode(errors="replace")
            return out
        done = False
        async for line in resp.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                done = True
                break
            obj = json.loads(data)
            if "error" in obj:
                out.error = str(obj["error"])
                continue
            if obj.get("usage"):
                out.usage_tokens = obj["usage"]["completion_tokens"]
            for c in obj.get("choices") or []:
                if "delta" in c and c["delta"].get("role") and not c["delta"].get("content") \
                        and not c.get("finish_reason"):
                    continue  # the chat stream's opening role chunk carries no token
                out.chunks += 1
                out.finish_reason = c.get("finish_reason") or out.finish_reason
        out.complete = done and out.finish_reason is not None and not out.error and (
            out.usage_tokens is None or out.usage_tokens >= 1)
        return out


@dataclass
class SoakReport:
    outcomes: list[StreamOutcome] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def statuses(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for o in self.outcomes:
            out[o.status] = out.get(o.status, 0) + 1
        return out


async def run_closed_loop(base_url: str, *, clients: int, duration_s: float, model: str, seed: int = 0,
                          max_tokens: tuple[int, int] = (8, 48), headers: dict[str, str] | None = None) -> SoakReport:
    """``clients`` streaming clients sending back to back for ``duration_s`` (chat and completions mixed)."""
    import httpx

    report = SoakReport()
    end = time.monotonic() + duration_s
    prompts = ["Tell me about the sea.", "What is 2 + 2?", "Write a haiku about autumn.", "Name three colors.",
               "Explain what a KV cache is in one sentence.", "Summarize: the cat sat on the mat."]

    async def client_loop(i: int, client: Any) -> None:
        rng = random.Random(seed * 1000 + i)
        while time.monotonic() < end:
            n = rng.randint(*max_tokens)
            chat = rng.random() < 0.5
            body: dict[str, Any] = {"model": model, "max_tokens": n, "stream": True, "temperature": 0.7,
                                    "seed": rng.randint(0, 10_000), "stream_options": {"include_usage": True}}
            if chat:
                body["messages"] = [{"role": "user", "content": rng.choice(prompts)}]
            else:
                body["prompt"] = rng.choice(prompts)
            path = "/v1/chat/completions" if chat else "/v1/completions"
            try:
                report.outcomes.append(await stream_once(client, base_url + path, body, headers))
            except (httpx.HTTPError, ValueError) as exc:
                report.outcomes.append(StreamOutcome(0, error=f"{type(exc).__name__}: {exc}"))

    t0 = time.perf_counter()
    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0), limits=limits) as client:
        await asyncio.gather(*(client_loop(i, client) for i in range(clients)))
    report.duration_s = time.perf_counter() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch08_production.loadgen", __doc__)
    parser.add_argument("--base-url", required=True, help="server root, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", default="smollm2-135m", help="model id the server serves")
    parser.add_argument("--api-key", default="none")
    parser.add_argument("--num-requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--request-rate", type=float, default=math.inf, help="req/s, Poisson; inf = no pacing")
    parser.add_argument("--max-output-len", type=int, default=64)
    parser.add_argument("--slo-ttft-s", type=float, default=SLO.ttft_s)
    parser.add_argument("--slo-tpot-s", type=float, default=SLO.tpot_s)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="4 requests of at most 16 tokens")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_requests, args.max_output_len = 4, 16
    with friendly_errors():
        try:
            cfg = BenchConfig(base_url=args.base_url, model=args.model, num_requests=args.num_requests,
                              concurrency=args.concurrency, request_rate=args.request_rate, seed=args.seed,
                              max_output_len=args.max_output_len, api_key=args.api_key)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        report = run_benchmark(cfg, build_requests(cfg))
    if report.summary["completed"] == 0:
        print(f"error: no request succeeded ({'; '.join(report.summary['errors'])}).", file=sys.stderr)
        return 1
    gp = goodput(report.results, report.duration_s, SLO(args.slo_ttft_s, args.slo_tpot_s))
    print_report(report)
    print_table([gp], title="SLO goodput")
    emit_json({"bench": "ch08_production.loadgen", **summarize(report.results, report.duration_s), **gp,
               "hardware": stamp_dict(dtype="server")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
