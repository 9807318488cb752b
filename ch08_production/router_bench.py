"""Measure the router's policies with two real replicas of our server on loopback (book 8.2.3, 8.2.4).

Starts two ``python -m ch08_production.server`` processes (one torch thread each, so the 2-core CPU runs
them side by side), then for each policy a fresh router in front of them, and replays the same workload
through it with ch03's streaming benchmark client: TTFT percentiles, output tokens/s, and how the
requests split between the replicas.

The workload has ``--prefixes`` distinct long "system prompts" shared by the requests, the situation
prefix affinity exists for. Whether affinity pays depends on the replicas caching prefixes: the ch05
engine does (prefix caching by block hash), the transformers backend does not; the table says which
backend served.

    python -m ch08_production.router_bench --smoke          # 8 requests per policy, 8 tokens each
    python -m ch08_production.router_bench --requests 48 --concurrency 6 --max-tokens 32
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ch03_env.vllm_server import free_port
from ch08_production.router import POLICIES, Router, RouterConfig
from common.cli import add_common_args, friendly_errors, make_parser
from common.datasets import WorkloadRequest
from common.paths import cache_dir

QUESTIONS = ("What is the capital of France?", "Name three primary colors.", "Why is the sky blue?",
             "Give one tip for better sleep.", "What is 12 times 7?", "Describe a cat in five words.")


@dataclass(frozen=True)
class Replicas:
    urls: tuple[str, ...]
    procs: tuple[subprocess.Popen, ...]
    backend: str

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def start_replicas(n: int, model: str, backend: str, timeout_s: float = 300.0) -> Replicas:
    """``n`` servers on free loopback ports, each limited to one torch thread; waits for ``/ready``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               LLMIC_API_KEYS="")
    logs = cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    urls, procs = [], []
    for i in range(n):
        port = free_port()
        log = open(Path(logs) / f"router-bench-replica-{i}.log", "w")  # noqa: SIM115 - owned by the child
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "ch08_production.server", "--host", "127.0.0.1", "--port", str(port),
             "--backend", backend, "--model", model, "--served-model-name", "bench", "--log-level", "warning",
             "--no-json-logs", "--no-content-filter", "--cost-per-hour", "1.0"],
            stdout=log, stderr=subprocess.STDOUT, env=env))
        log.close()
        urls.append(f"http://127.0.0.1:{port}")
    reps = Replicas(tuple(urls), tuple(procs), backend)
    end = time.monotonic() + timeout_s
    pending = set(urls)
    while pending and time.monotonic() < end:
        for url, p in zip(urls, procs, strict=True):
            if p.poll() is not None:
                reps.stop()
                raise RuntimeError(f"replica {url} exited with {p.returncode}; see {logs}")
            if url in pending:
                try:
                    if httpx.get(url + "/ready", timeout=2).status_code == 200:
                        pending.discard(url)
                except httpx.HTTPError:
                    pass
        time.sleep(0.5)
    if pending:
        reps.stop()
        raise RuntimeError(f"replicas {sorted(pending)} not ready after {timeout_s:.0f} s; see {logs}")
    return reps


class ThreadedRouter:
    """A :class:`Router` under uvicorn on a loopback port, in a background thread."""

    def __init__(self, cfg: RouterConfig) -> None:
        import uvicorn

        self.router = Router(cfg)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.router, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def workload(n: int, prefixes: int, max_tokens: int, prefix_words: int = 120) -> list[WorkloadRequest]:
    """``n`` prompts: one of ``prefixes`` long shared system texts + a short question."""
    systems = [" ".join(f"rule{p}-{w}" for w in range(prefix_words)) for p in range(prefixes)]
    return [WorkloadRequest(f"r{i}", f"{systems[i % prefixes]}\nQuestion: {QUESTIONS[i % len(QUESTIONS)]}\n"
                            "Answer:", prefix_words + 12, max_tokens) for i in range(n)]


def run_policy(policy: str, replicas: Replicas, reqs: list[WorkloadRequest], concurrency: int) -> dict:
    from ch03_env.bench import BenchConfig, run_benchmark

    threaded = ThreadedRouter(RouterConfig(replicas.urls, policy, prefix_chars=200))
    with threaded as url:
        cfg = BenchConfig(base_url=url, model="bench", num_requests=len(reqs), concurrency=concurrency,
                          ignore_eos=True)
        report = run_benchmark(cfg, reqs)
    s = report.summary
    split = "/".join(str(r.served) for r in threaded.router.balancer.replicas)
    return {"policy": policy, "ok": s["completed"], "failed": s["failed"],
            "ttft_p50_ms": s["ttft_ms"]["p50"], "ttft_p99_ms": s["ttft_ms"]["p99"],
            "tpot_p50_ms": s["tpot_ms"]["p50"], "out_tok_per_s": s["output_throughput"],
            "req_per_s": s["request_throughput"], "split": split, "errors": s["errors"]}


def main(argv: list[str] | None = None) -> int:
    from common.bench import stamp_dict
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch08_production.router_bench", __doc__)
    add_common_args(parser)
    parser.add_argument("--replica-backend", default="engine", choices=("engine", "transformers"),
                        help="what the replicas run (engine falls back to transformers when absent)")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--prefixes", type=int, default=4, help="distinct shared system prompts")
    parser.add_argument("--policies", default=",".join(POLICIES))
    args = parser.parse_args(argv)
    if args.smoke:
        args.requests, args.max_tokens, args.concurrency = 8, 8, 4
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if bad := [p for p in policies if p not in POLICIES]:
        print(f"error: unknown policy {bad[0]!r}; choose from {', '.join(POLICIES)}", file=sys.stderr)
        return 2
    with friendly_errors():
        from common.loader import resolve_model_path

        replicas = start_replicas(2, resolve_model_path(args.model), args.replica_backend)
        try:
            reqs = workload(args.requests, args.prefixes, args.max_tokens)
            run_policy(policies[0], replicas, reqs[: min(4, len(reqs))], args.concurrency)  # warm-up
            rows = [run_policy(p, replicas, reqs, args.concurrency) for p in policies]
        finally:
            replicas.stop()
    print_table([{k: v for k, v in r.items() if k != "errors"} for r in rows],
                title=f"router over 2 replicas ({args.replica_backend} backend), {args.requests} requests, "
                      f"{args.max_tokens} tokens, concurrency {args.concurrency}")
    emit_json({"benchmark": "router_policies", "replicas": 2, "replica_backend": args.replica_backend,
               "requests": args.requests, "max_tokens": args.max_tokens, "concurrency": args.concurrency,
               "policies": rows, "hardware": stamp_dict(dtype="fp32")})
    return 0 if all(r["failed"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
