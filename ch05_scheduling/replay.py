"""Replay a request trace through the real engine in wall-clock time (the simulator's ground truth).

Book sections: 5.3.4 性能提升分析 (measure, don't assume), 5.5/5.6 (the same trace for every policy).

Each :class:`TraceRequest` is added when the wall clock passes its arrival time (relative to the start
of the replay); when nothing runs and nothing has arrived, the loop sleeps until the next arrival. The
returned :class:`Sequence` objects carry the real timings, so ``metrics.summarize_requests`` treats them
exactly as it treats the simulator's.

    python -m ch05_scheduling.replay --smoke
"""

from __future__ import annotations

import time

from ch05_scheduling.engine import LLMEngine
from ch05_scheduling.sequence import Sequence
from ch05_scheduling.simulator import make_sequence
from ch05_scheduling.workload import TraceRequest


def replay(engine: LLMEngine, trace: list[TraceRequest], *,
           predictions: dict[int, int] | None = None, skip_idle: bool = False) -> list[Sequence]:
    """Run ``trace`` on ``engine``; times in the returned sequences are seconds since the replay began.

    ``skip_idle``: while the engine has nothing to run, move the clock forward to the next arrival instead
    of sleeping. Every step still takes its real time, so the timings are the same as a sleeping replay's,
    but a sweep over low arrival rates costs only the engine's busy time.
    """
    pending = sorted(trace, key=lambda r: (r.arrival_time, r.request_id))
    seqs = [make_sequence(r, predicted=(predictions or {}).get(r.request_id)) for r in pending]
    start = time.perf_counter()
    skipped = [0.0]
    engine.clock = lambda: time.perf_counter() - start + skipped[0]

    def wait(seconds: float) -> None:
        if skip_idle:
            skipped[0] += max(seconds, 0.0)
        else:
            time.sleep(max(seconds, 0.0))
    i = 0
    try:
        while i < len(seqs) or engine.has_unfinished():
            now = engine.clock()
            while i < len(seqs) and seqs[i].arrival_time <= now:
                engine.add_sequence(seqs[i])
                i += 1
            if engine.has_unfinished():
                engine.step()
            if not engine.has_unfinished() and i < len(seqs):
                wait(seqs[i].arrival_time - engine.clock())
            elif engine.has_unfinished() and not engine.scheduler.running:
                wake = engine.scheduler.next_wakeup(engine.clock())
                nxt = min(t for t in (wake, seqs[i].arrival_time if i < len(seqs) else None, now + 0.01)
                          if t is not None)
                wait(nxt - engine.clock())
    finally:
        engine.clock = time.perf_counter
    return seqs


def main(argv: list[str] | None = None) -> int:
    from ch05_scheduling.engine import EngineConfig
    from ch05_scheduling.metrics import summarize_requests
    from ch05_scheduling.workload import poisson_arrivals, synthetic_trace, with_arrivals
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.report import print_table

    parser = make_parser("python -m ch05_scheduling.replay", __doc__)
    add_common_args(parser)
    parser.add_argument("--n", type=int, default=16, help="requests")
    parser.add_argument("--rate", type=float, default=2.0, help="Poisson arrival rate, requests/s")
    parser.add_argument("--policy", default="continuous")
    args = parser.parse_args(argv)
    with friendly_errors():
        n = 4 if args.smoke else args.n
        trace = synthetic_trace(n, args.seed, mean_prompt=60, mean_output=16 if args.smoke else 64, max_output=128)
        trace = with_arrivals(trace, poisson_arrivals(n, args.rate, args.seed))
        engine = LLMEngine(EngineConfig(model=args.model, device=args.device, dtype=args.dtype,
                                        load_format=args.load_format, policy=args.policy))
        m = summarize_requests(replay(engine, trace))
        print_table([{k: m[k] for k in ("requests", "throughput_tok_s", "ttft_mean", "ttft_p90", "tpot_mean",
                                        "e2e_p90", "preemptions")}], title=f"real engine, {args.policy}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
