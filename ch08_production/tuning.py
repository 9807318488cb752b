"""The 8.5 tuning walk-through, reproducible: measure, find the bottleneck, change one knob, measure again.

    python -m ch08_production.tuning            # 4 steps, 16 ShareGPT requests x <= 32 tokens, 8 concurrent
    python -m ch08_production.tuning --smoke    # 4 steps, 4 requests x 8 tokens

Each step is a fresh process (so an environment variable such as ``OMP_WAIT_POLICY`` really applies)
running our server in-process on 127.0.0.1 with the embedded model, loaded by ch03's streaming client.
Besides client-side tokens/s, TTFT and TPOT, every step reports the engine's mean *step* time next to the
roofline of a decode step (ch02's method: all weights read once per step / measured read bandwidth),
which is how the bottleneck is found: a step far above its roofline is not waiting on memory.

Steps: (1) ``transformers`` backend, one request at a time; (2) ch05 engine (continuous batching),
``max_num_seqs=4``; (3) the same with ``OMP_WAIT_POLICY=PASSIVE``; (4) ``max_num_seqs=16``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from common.report import emit_json, parse_json_line, print_table


@dataclass(frozen=True)
class Step:
    name: str
    backend: str
    omp: str
    max_num_seqs: int = 4


STEPS = (
    Step("1 transformers backend (one request at a time)", "transformers", "ACTIVE"),
    Step("2 ch05 engine, continuous batching, max_num_seqs=4", "engine", "ACTIVE"),
    Step("3 + OMP_WAIT_POLICY=PASSIVE", "engine", "PASSIVE"),
    Step("4 + max_num_seqs=16", "engine", "PASSIVE", 16),
)


def run_step(step: Step, num_requests: int, concurrency: int, max_output_len: int, seed: int) -> dict[str, Any]:
    """Inside the step's own process: serve, load, measure."""
    from ch03_env.bench import BenchConfig, build_requests, run_benchmark
    from ch03_env.vllm_server import SERVED_MODEL_NAME, free_port
    from ch08_production.app import create_app
    from ch08_production.backends import make_backend
    from ch08_production.config import ServerConfig
    from ch08_production.launch import BackgroundServer
    from ch08_production.state import ServerState
    from common.bench import measure_read_bandwidth

    kw: dict[str, Any] = {"max_num_seqs": step.max_num_seqs} if step.backend == "engine" else {}
    backend = make_backend(step.backend, SERVED_MODEL_NAME, model_name=SERVED_MODEL_NAME, max_model_len=2048, **kw)
    port = free_port()
    state = ServerState(ServerConfig(port=port, backend=step.backend, served_model_name=SERVED_MODEL_NAME,
                                     log_level="warning"), backend)
    cfg = BenchConfig(base_url="http://127.0.0.1:1", num_requests=num_requests, concurrency=concurrency, seed=seed,
                      max_output_len=max_output_len)
    requests = build_requests(cfg)
    with BackgroundServer(state=state, app=create_app(state), port=port) as srv:
        from dataclasses import replace

        cfg = replace(cfg, base_url=srv.url)
        run_benchmark(cfg, requests[:2])  # warm-up
        engine = getattr(backend, "engine", None)
        n0 = len(engine.step_log) if engine is not None else 0
        rep = run_benchmark(cfg, requests)
        steps = [r.seconds for r in engine.step_log[n0:]] if engine is not None else []
    weight_bytes = sum(p.numel() * p.element_size() for p in (engine.model if engine else backend.model).parameters())
    bw = measure_read_bandwidth()
    s = rep.summary
    return {"step": step.name, "out tok/s": s["output_throughput"], "TTFT p50 ms": s["ttft_ms"]["p50"],
            "TPOT p50 ms": s["tpot_ms"]["p50"], "engine step ms": 1000 * sum(steps) / len(steps) if steps else math.nan,
            "roofline step ms": 1000 * weight_bytes / bw, "failed": s["failed"],
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def main(argv: list[str] | None = None) -> int:
    from common.cli import make_parser

    parser = make_parser("python -m ch08_production.tuning", __doc__)
    parser.add_argument("--smoke", action="store_true", help="4 requests x 8 tokens per step")
    parser.add_argument("--num-requests", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-output-len", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print only the final JSON line")
    parser.add_argument("--run-step", type=int, default=None, help=argparse_suppress())
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_requests, args.max_output_len, args.concurrency = 4, 8, 4
    if args.run_step is not None:
        print(json.dumps(run_step(STEPS[args.run_step], args.num_requests, args.concurrency, args.max_output_len,
                                  args.seed)))
        return 0
    rows = []
    for i, step in enumerate(STEPS):
        env = dict(os.environ, OMP_WAIT_POLICY=step.omp)
        cmd = [sys.executable, "-m", "ch08_production.tuning", "--run-step", str(i), "--num-requests",
               str(args.num_requests), "--concurrency", str(args.concurrency), "--max-output-len",
               str(args.max_output_len), "--seed", str(args.seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            print(f"error: step {step.name!r} failed: {tail}", file=sys.stderr)
            return 1
        rows.append(parse_json_line(proc.stdout))
        if not args.json:
            print(f"done: {step.name}: {rows[-1]['out tok/s']:.1f} tok/s", flush=True)
    if not args.json:
        print_table([{k: v for k, v in r.items() if k != "omp_wait_policy"} for r in rows], floatfmt=".1f",
                    title=f"{args.num_requests} ShareGPT requests, {args.concurrency} concurrent, "
                          f"<= {args.max_output_len} output tokens, embedded model fp32")
    from common.bench import stamp_dict

    emit_json({"bench": "ch08_production.tuning", "steps": rows,
               "speedup_last_vs_first": rows[-1]["out tok/s"] / rows[0]["out tok/s"] if rows[0]["out tok/s"] else None,
               "hardware": stamp_dict(dtype="fp32")})
    return 0


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
