"""Chapter 8's 常见误区 (common pitfalls), each measured with the real engine and server or ch05's simulator.

1. "Ready as soon as the weights are loaded": a fresh ch05 ``LLMEngine`` (the one ch08's ``engine``
   backend serves) takes the same request several times; the first one pays the one-time costs of a
   fresh process (kernels and memory initialised on first use), so a replica put behind the load
   balancer without a warm-up request hands them to a user.
2. "No limit on pending requests is the friendliest setting": ch05's simulator (real scheduler, this
   machine's cost model) offered twice the load it can serve; without ``max_pending`` every request is
   accepted and waits in a queue that only grows, with it the excess is turned away (ch08's 503 +
   Retry-After) and those accepted keep a short TTFT.
3. "/health says 200, so the model works": the real app (``create_app``) over the engine backend, then
   the model's final norm weights are set to NaN (a broken checkpoint, an fp16 overflow): ``/health``
   and ``/ready`` still answer 200 because neither runs the model, and so does ``/v1/completions`` while
   it returns garbage; a canary check (a fixed greedy prompt against the answer recorded at start) fails.

    python -m ch08_production.pitfalls --smoke
    python -m ch08_production.pitfalls
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from ch04_kvcache.sampling import SamplingParams
from ch05_scheduling.engine import EngineConfig, LLMEngine
from ch05_scheduling.scheduler import SchedulerConfig
from ch05_scheduling.simulator import load_cost_model, simulate
from ch05_scheduling.workload import poisson_arrivals, synthetic_trace, with_arrivals
from ch08_production.backends.engine import EngineBackend
from common.bench import percentile
from common.pitfalls import Pitfall, pitfalls_main

CH = "ch08"
PROMPT = "Explain what a KV cache is in one sentence."
CANARY = "The capital of France is"


def warmup_pitfall(engine: LLMEngine, load_s: float | None, smoke: bool) -> Pitfall:
    ids = engine.encode(PROMPT)
    params = SamplingParams(max_tokens=4 if smoke else 16, temperature=0, ignore_eos=True)
    e2e, ttft = [], []
    for _ in range(3 if smoke else 8):
        t0 = time.perf_counter()
        out = engine.generate([ids], params)[0]
        e2e.append(time.perf_counter() - t0)
        ttft.append(out.first_token_time - out.arrival_time)
    steady_e2e, steady_ttft = statistics.median(e2e[1:]), statistics.median(ttft[1:])
    return Pitfall(
        CH, "ready as soon as the weights are loaded",
        "the first request is as fast as any other, so a replica needs no warm-up",
        {"engine_load_s": load_s if load_s is not None else "shared model", "prompt_tokens": len(ids),
         "new_tokens": params.max_tokens, "first_e2e_s": e2e[0], "steady_e2e_s": steady_e2e,
         "first_ttft_s": ttft[0], "steady_ttft_s": steady_ttft, "first_vs_steady_e2e": e2e[0] / steady_e2e,
         "first_vs_steady_ttft": ttft[0] / steady_ttft},
        f"the first request took {e2e[0]:.2f} s ({ttft[0] * 1e3:.0f} ms to its first token), the next ones "
        f"{steady_e2e:.2f} s ({steady_ttft * 1e3:.0f} ms): {e2e[0] / steady_e2e:.2f}x end to end, "
        f"{ttft[0] / steady_ttft:.2f}x TTFT"
        + (f", after {load_s:.1f} s of engine start" if load_s is not None else "")
        + "; send one warm-up request before /ready turns 200 (and build C++ kernels into the image)")


def overload_pitfall(smoke: bool) -> Pitfall:
    cost = load_cost_model()
    n = 80 if smoke else 600
    base = synthetic_trace(n, 0)
    cfg = SchedulerConfig(num_blocks=8192, max_num_seqs=16)
    offline = simulate(base, cfg, "continuous", cost).metrics()
    capacity = offline["request_rate_rps"]  # all at once: the most requests/s it can finish
    trace = with_arrivals(base, poisson_arrivals(n, 2 * capacity, 0))
    limit = 2 * cfg.max_num_seqs
    res = {"unbounded": simulate(trace, cfg, "continuous", cost),
           "max_pending": simulate(trace, cfg, "continuous", cost, max_pending=limit)}
    m = {k: r.metrics() for k, r in res.items()}

    def last_tenth_ttft(r) -> float:  # the requests that arrived last: the queue they found
        late = sorted(r.seqs, key=lambda s: s.arrival_time)[-max(1, len(r.seqs) // 10):]
        return percentile([s.first_token_time - s.arrival_time for s in late], 50)

    late = {k: last_tenth_ttft(r) for k, r in res.items()}
    rejected = len(res["max_pending"].rejected) / n
    return Pitfall(
        CH, "no limit on pending requests is the friendliest setting",
        "accepting every request is better for users than answering some with 503",
        {"requests": n, "capacity_rps": capacity, "offered_rps": 2 * capacity, "max_pending": limit,
         "ttft_p90_unbounded_s": m["unbounded"]["ttft_p90"], "ttft_p90_limited_s": m["max_pending"]["ttft_p90"],
         "ttft_last_tenth_unbounded_s": late["unbounded"], "ttft_last_tenth_limited_s": late["max_pending"],
         "rejected_share_limited": rejected, "cost_model": cost.meta.get("source", "calibrated")},
        f"at 2x the {capacity:.2f} req/s this engine sustains, accepting everything made p90 TTFT "
        f"{m['unbounded']['ttft_p90']:.1f} s and the last tenth of requests waited {late['unbounded']:.1f} s "
        f"(the queue only grows); with max_pending={limit} {rejected:.0%} got a 503 at once (a client retries "
        f"or another replica serves it) and the accepted kept p90 TTFT {m['max_pending']['ttft_p90']:.1f} s "
        f"({late['max_pending']:.1f} s for the last tenth)")


class _SharedEngineBackend(EngineBackend):
    """ch08's engine backend around an engine already built (its model and tokenizer shared)."""

    def __init__(self, engine: LLMEngine) -> None:
        super().__init__(engine.config.model, model_name="smollm2-135m")
        self._shared = engine

    async def start(self, reuse: LLMEngine | None = None) -> None:
        await super().start(reuse=reuse or self._shared)


def health_pitfall(engine: LLMEngine) -> Pitfall:
    from fastapi.testclient import TestClient

    from ch08_production.app import create_app
    from ch08_production.config import ServerConfig
    from ch08_production.state import ServerState

    backend = _SharedEngineBackend(engine)
    state = ServerState(ServerConfig(served_model_name=backend.model_name, log_level="warning"), backend)
    body = {"model": backend.model_name, "prompt": CANARY, "max_tokens": 4, "temperature": 0}
    norm = engine.model.norm.weight
    saved = norm.detach().clone()

    def probe(client) -> tuple[int, int, int, str, float]:
        t0 = time.perf_counter()
        r = client.post("/v1/completions", json=body)
        canary_s = time.perf_counter() - t0
        text = r.json()["choices"][0]["text"] if r.status_code == 200 else ""
        return (client.get("/health").status_code, client.get("/ready").status_code, r.status_code, text,
                canary_s)

    with TestClient(create_app(state)) as client:
        h0, r0, c0, golden, canary_s = probe(client)
        try:
            with torch.no_grad():
                norm.fill_(float("nan"))
            h1, r1, c1, broken, _ = probe(client)
        finally:
            with torch.no_grad():
                norm.copy_(saved)
    return Pitfall(
        CH, "/health says 200, so the model works",
        "a liveness/readiness endpoint that answers proves the replica can serve",
        {"health_ok_model": h0, "ready_ok_model": r0, "completion_ok_model": c0, "canary_answer": golden,
         "health_broken_model": h1, "ready_broken_model": r1, "completion_broken_model": c1,
         "broken_answer": broken, "canary_detects": broken != golden, "canary_ms": canary_s * 1e3},
        f"with NaN weights /health answered {h1}, /ready {r1} and /v1/completions {c1} (text {broken!r} instead "
        f"of {golden!r}): the load balancer keeps sending users to a broken replica. A canary (this prompt, "
        f"greedy, compared with the answer recorded at start) catches it for {canary_s * 1e3:.0f} ms a probe")


def run(smoke: bool, model=None, tokenizer=None) -> list[Pitfall]:
    t0 = time.perf_counter()
    cfg = EngineConfig(kv_cache_mib=64, max_num_seqs=8)
    engine = LLMEngine(cfg, model=model, tokenizer=tokenizer)
    load_s = time.perf_counter() - t0 if model is None else None
    return [warmup_pitfall(engine, load_s, smoke), overload_pitfall(smoke), health_pitfall(engine)]


def main(argv: list[str] | None = None) -> int:
    return pitfalls_main("python -m ch08_production.pitfalls", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
