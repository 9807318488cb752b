"""Discrete-event simulator of the serving engine: the real scheduler, a cost model instead of a GPU/CPU.

Book sections: 5.3.3 图解工作流程, 5.3.4 性能提升分析, 5.5 高级调度策略 (compare policies in seconds
instead of hours), 5.6.2 不同场景的调度策略.

The simulator drives the *same* :class:`Scheduler`, block manager and policy objects as the engine;
only the model step is replaced: its duration comes from a :class:`CostModel` (calibrated on this
machine by ``calibrate.py``; an uncalibrated, illustrative default otherwise) and every scheduled
sequence that reaches its end "samples" a dummy token. Events: request arrivals, step completions, and
policy wake-ups (dynamic batching's timeout). The KV capacity limit is the block manager's, so
preemptions happen exactly when they would for real.

    python -m ch05_scheduling.simulator --smoke
    python -m ch05_scheduling.simulator --arrivals poisson --rate 4 --n 200
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ch05_scheduling.cost_model import CostModel
from ch05_scheduling.length_predictor import BucketPredictor
from ch05_scheduling.metrics import SLO, summarize_requests
from ch05_scheduling.policies import POLICY_NAMES, Policy, make_policy
from ch05_scheduling.scheduler import Scheduler, SchedulerConfig
from ch05_scheduling.sequence import SamplingParams, Sequence
from ch05_scheduling.workload import (
    TraceRequest,
    bursty_arrivals,
    poisson_arrivals,
    synthetic_trace,
    with_arrivals,
)
from common.paths import cache_dir

# Illustrative only (not measured): roughly a 135M-parameter fp32 model on a 2-core CPU.
DEFAULT_COST = CostModel([0.030, 0.0004, 0.0012, 0.00002, 0.0003], {"source": "uncalibrated default"})
DUMMY_TOKEN = 1


@dataclass(frozen=True, slots=True)
class StepTrace:
    start: float
    end: float
    work: tuple[tuple[int, int, bool], ...]   # (seq_id, new tokens, is_prefill)
    num_waiting: int
    kv_usage: float


@dataclass
class SimResult:
    seqs: list[Sequence]
    steps: list[StepTrace] = field(default_factory=list)
    num_preemptions: int = 0
    rejected: list[Sequence] = field(default_factory=list)  # turned away at arrival (``max_pending``)

    def metrics(self, slo: SLO | None = None) -> dict[str, float]:
        return summarize_requests(self.seqs, slo)


def make_sequence(req: TraceRequest, eos_token_ids: tuple[int, ...] = (), predicted: int | None = None) -> Sequence:
    """The engine-side request for a trace entry: exactly ``output_len`` tokens (``ignore_eos``)."""
    return Sequence(req.request_id, list(req.prompt_token_ids), SamplingParams(max_tokens=req.output_len,
                                                                               ignore_eos=True),
                    arrival_time=req.arrival_time, priority=req.priority, tenant=req.tenant,
                    predicted_output_len=predicted, eos_token_ids=eos_token_ids)


def default_cost_path() -> Path:
    return cache_dir() / "ch05" / "cost_model.json"


def load_cost_model(path: Path | None = None) -> CostModel:
    """The calibrated model if ``calibrate.py`` has saved one, else :data:`DEFAULT_COST`."""
    path = path or default_cost_path()
    return CostModel.load(path) if path.is_file() else DEFAULT_COST


def simulate(trace: list[TraceRequest], config: SchedulerConfig, policy: Policy | str = "continuous",
             cost: CostModel = DEFAULT_COST, *, predictions: dict[int, int] | None = None,
             keep_steps: bool = False, max_pending: int | None = None) -> SimResult:
    """Run ``trace`` through a fresh scheduler; ``predictions`` = SJF's predicted output lengths.

    ``max_pending``: a request that arrives while that many are already in the scheduler (waiting +
    running) is turned away (a server's 503) and listed in ``result.rejected``, not in ``result.seqs``."""
    sched = Scheduler(config, make_policy(policy) if isinstance(policy, str) else policy)
    pending = sorted(trace, key=lambda r: (r.arrival_time, r.request_id))
    seqs = [make_sequence(r, predicted=(predictions or {}).get(r.request_id)) for r in pending]
    result = SimResult(seqs)
    i, clock = 0, 0.0
    while i < len(seqs) or sched.has_unfinished:
        while i < len(seqs) and seqs[i].arrival_time <= clock:
            if max_pending is not None and len(sched.waiting) + len(sched.running) >= max_pending:
                result.rejected.append(seqs[i])
            else:
                sched.add(seqs[i])
            i += 1
        out = sched.schedule(clock)
        if out.is_empty:
            wake = [t for t in (seqs[i].arrival_time if i < len(seqs) else None, sched.next_wakeup(clock))
                    if t is not None and t > clock]
            if not wake:
                raise RuntimeError("the simulated scheduler is stuck: nothing runs and nothing will arrive")
            clock = min(wake)
            continue
        start = clock
        clock += max(cost.step_time(out), 1e-9)
        if keep_steps:
            result.steps.append(StepTrace(start, clock, tuple((s.seq_id, s.num_new_tokens, s.is_prefill)
                                                              for s in out.scheduled), out.num_waiting,
                                          out.kv_usage))
        sched.update(out, {s.seq_id: DUMMY_TOKEN for s in out.scheduled if s.sample}, clock)
    result.num_preemptions = sched.num_preemptions
    if result.rejected:
        turned_away = {id(s) for s in result.rejected}
        result.seqs = [s for s in seqs if id(s) not in turned_away]
    return result


def max_goodput_rate(trace: list[TraceRequest], config: SchedulerConfig, policy: str, cost: CostModel,
                     slo: SLO, *, attainment: float = 0.9, lo: float = 0.05, hi: float = 64.0,
                     iters: int = 12, seed: int = 0) -> float:
    """DistServe's goodput: the highest Poisson rate (req/s) whose SLO attainment stays >= ``attainment``."""
    def ok(rate: float) -> bool:
        res = simulate(with_arrivals(trace, poisson_arrivals(len(trace), rate, seed)), config, policy, cost)
        return res.metrics(slo)["slo_attainment"] >= attainment

    if not ok(lo):
        return 0.0
    if ok(hi):
        return hi
    for _ in range(iters):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def main(argv: list[str] | None = None) -> int:
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch05_scheduling.simulator", __doc__)
    add_common_args(parser, model=False)
    parser.add_argument("--n", type=int, default=200, help="requests in the trace")
    parser.add_argument("--arrivals", choices=("poisson", "bursty", "offline"), default="poisson")
    parser.add_argument("--rate", type=float, default=1.5, help="mean arrival rate, requests/s")
    parser.add_argument("--policies", default=",".join(POLICY_NAMES), help="comma-separated policy names")
    parser.add_argument("--num-blocks", type=int, default=728, help="KV blocks of 16 tokens (728 = 512 MiB fp32)")
    parser.add_argument("--max-num-seqs", type=int, default=8)
    parser.add_argument("--max-num-batched-tokens", type=int, default=512)
    parser.add_argument("--ttft-slo", type=float, default=5.0, help="TTFT SLO, seconds")
    parser.add_argument("--tpot-slo", type=float, default=0.3, help="TPOT SLO, seconds")
    args = parser.parse_args(argv)
    with friendly_errors():
        n = 24 if args.smoke else args.n
        trace = synthetic_trace(n, args.seed, tenants=3)
        if args.arrivals == "poisson":
            trace = with_arrivals(trace, poisson_arrivals(n, args.rate, args.seed))
        elif args.arrivals == "bursty":
            trace = with_arrivals(trace, bursty_arrivals(n, args.rate, 3.0, args.seed))
        cost = load_cost_model()
        cfg = SchedulerConfig(num_blocks=args.num_blocks, max_num_seqs=args.max_num_seqs,
                              max_num_batched_tokens=args.max_num_batched_tokens)
        slo = SLO(args.ttft_slo, args.tpot_slo)
        oracle = {r.request_id: r.output_len for r in trace}
        predictor = BucketPredictor.fit(synthetic_trace(400, args.seed + 1000, tenants=3))
        runs = [(n, n, oracle if n == "sjf" else None) for n in args.policies.split(",")]
        if "sjf" in args.policies.split(","):
            runs += [("sjf", "sjf (predictor)", predictor.predict_trace(trace)),
                     ("sjf", "sjf (inverted)", {k: 10_000 - v for k, v in oracle.items()})]
        rows = []
        for name, label, pred in runs:
            m = simulate(trace, cfg, name, cost, predictions=pred).metrics(slo)
            rows.append({"policy": label, "tok/s": m["throughput_tok_s"], "ttft p50": m["ttft_p50"],
                         "ttft p99": m["ttft_p99"], "tpot p50": m["tpot_p50"], "e2e p90": m["e2e_p90"],
                         "queue p90": m["queue_p90"], "SLO ok": m["slo_attainment"],
                         "goodput rps": m["goodput_rps"], "preempt": m["preemptions"]})
        print_table(rows, title=f"simulated: {n} requests, {args.arrivals} arrivals at {args.rate}/s; cost model: "
                                f"{cost.meta.get('source', 'calibrated')} ({cost.describe()})")
        emit_json({"simulator": rows, "cost_model": cost.meta, "arrivals": args.arrivals, "rate": args.rate})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
