"""Chapter 5's 常见误区 (common pitfalls), each measured with this chapter's scheduler.

Both run the real ``Scheduler`` and policies in ``simulator.simulate`` (a cost model instead of the
model: the one ``calibrate.py`` saved on this machine, or the illustrative default, named in the output).

1. "Static batching keeps the batch full": requests arrive all at once, batch 8; the share of batch
   slots that stay empty while a batch waits for its longest request, static vs continuous (every
   step's live sequences over ``max_num_seqs``, weighted by step time).
2. "A bigger batch is always better": Poisson arrivals, continuous batching at ``max_num_seqs`` 8, 32
   and 128; throughput flattens while every token of every request gets slower (TPOT), until a
   TPOT target is missed.

    python -m ch05_scheduling.pitfalls --smoke
    python -m ch05_scheduling.pitfalls
"""

from __future__ import annotations

import sys

from ch05_scheduling.metrics import SLO
from ch05_scheduling.scheduler import SchedulerConfig
from ch05_scheduling.simulator import SimResult, load_cost_model, simulate
from ch05_scheduling.workload import poisson_arrivals, synthetic_trace, with_arrivals
from common.pitfalls import Pitfall, pitfalls_main

CH = "ch05"
TPOT_TARGET_S = 0.2


def idle_share(res: SimResult, max_num_seqs: int) -> float:
    """Share of slot-seconds with no live sequence in them, over the whole run."""
    used = sum(len(s.work) * (s.end - s.start) for s in res.steps)
    total = sum(max_num_seqs * (s.end - s.start) for s in res.steps)
    return 1 - used / total


def static_idle_pitfall(n: int, cost) -> Pitfall:
    batch = 8
    trace = synthetic_trace(n, 0)
    cfg = SchedulerConfig(num_blocks=8192, max_num_seqs=batch)
    res = {p: simulate(trace, cfg, p, cost, keep_steps=True) for p in ("static", "continuous")}
    idle = {p: idle_share(r, batch) for p, r in res.items()}
    tok = {p: r.metrics()["throughput_tok_s"] for p, r in res.items()}
    return Pitfall(
        CH, "static batching keeps the batch full",
        "a batch of 8 requests keeps 8 slots working until it is done",
        {"requests": n, "batch": batch, "static_idle_share": idle["static"],
         "continuous_idle_share": idle["continuous"], "continuous_vs_static_tok_s": tok["continuous"] / tok["static"],
         "cost_model": cost.meta.get("source", "calibrated")},
        f"{idle['static']:.0%} of static batching's slot-time was empty (finished requests waiting for the "
        f"batch's longest one; continuous: {idle['continuous']:.0%}), so continuous batching produced "
        f"{tok['continuous'] / tok['static']:.2f}x the tokens/s from the same trace")


def big_batch_pitfall(n: int, cost) -> Pitfall:
    trace = with_arrivals(synthetic_trace(n, 0), poisson_arrivals(n, 4.0, 0))
    slo = SLO(ttft_s=1e9, tpot_s=TPOT_TARGET_S)  # TPOT only
    m = {}
    for b in (8, 32, 128):
        cfg = SchedulerConfig(num_blocks=16384, max_num_seqs=b, max_num_batched_tokens=max(512, b))
        m[b] = simulate(trace, cfg, "continuous", cost).metrics(slo)
    gain = m[128]["throughput_tok_s"] / m[32]["throughput_tok_s"]
    slower = m[128]["tpot_p90"] / m[32]["tpot_p90"]
    return Pitfall(
        CH, "a bigger batch is always better",
        "raising max_num_seqs only adds throughput",
        {"requests": n, "rate_rps": 4.0, **{f"tok_s_b{b}": m[b]["throughput_tok_s"] for b in m},
         **{f"tpot_p90_b{b}": m[b]["tpot_p90"] for b in m},
         **{f"tpot_ok_share_b{b}": m[b]["slo_attainment"] for b in m},
         "tok_s_gain_128_vs_32": gain, "tpot_p90_ratio_128_vs_32": slower},
        f"batch 128 instead of 32 gave {gain:.2f}x the tokens/s but made p90 TPOT {slower:.2f}x longer "
        f"({m[32]['tpot_p90'] * 1e3:.0f} -> {m[128]['tpot_p90'] * 1e3:.0f} ms); requests meeting a "
        f"{TPOT_TARGET_S * 1e3:.0f} ms TPOT target: {m[32]['slo_attainment']:.0%} -> {m[128]['slo_attainment']:.0%}")


def run(smoke: bool) -> list[Pitfall]:
    cost = load_cost_model()
    return [static_idle_pitfall(32 if smoke else 200, cost), big_batch_pitfall(64 if smoke else 400, cost)]


def main(argv: list[str] | None = None) -> int:
    return pitfalls_main("python -m ch05_scheduling.pitfalls", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
