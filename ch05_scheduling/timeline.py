"""The chapter's key picture: static vs continuous batching of a handful of requests, step by step (5.3.3).

Book sections: 5.3.1 问题：静态批处理的浪费, 5.3.3 图解工作流程.

Six requests with very different output lengths go through the simulator twice with the same cost
model and the same batch size (4): once under static batching, once under continuous batching. Each
row of the figure is a request: grey while it waits, dark for prefill, light for decode. Under static
batching the short requests' slots idle until the batch's longest member ends, and the late ones wait;
under continuous batching a finished request's slot is refilled at the next step.

    python -m ch05_scheduling.timeline            # writes reports/ch05/timeline_static_vs_continuous.png

(A Gantt chart is not a line chart, so this module draws with matplotlib itself instead of
``common.report.save_plot``; the drawing is kept apart from the computation, in :func:`draw`.)
"""

from __future__ import annotations

from pathlib import Path

from ch05_scheduling.cost_model import CostModel
from ch05_scheduling.scheduler import SchedulerConfig
from ch05_scheduling.simulator import SimResult, load_cost_model, simulate
from ch05_scheduling.workload import TraceRequest
from common.paths import reports_dir

# (prompt tokens, output tokens, arrival s): short and long jobs mixed, two latecomers
HANDFUL = ((40, 12, 0.0), (30, 60, 0.0), (50, 8, 0.0), (20, 30, 0.0), (35, 10, 0.3), (25, 16, 0.6))


def handful_trace() -> list[TraceRequest]:
    return [TraceRequest(i, a, tuple(range(100 + 7 * i, 100 + 7 * i + p)), o) for i, (p, o, a) in enumerate(HANDFUL)]


def run_both(cost: CostModel, batch_size: int = 4) -> dict[str, SimResult]:
    cfg = SchedulerConfig(num_blocks=256, max_num_seqs=batch_size, max_num_batched_tokens=512)
    return {name: simulate(handful_trace(), cfg, name, cost, keep_steps=True) for name in ("static", "continuous")}


def draw(results: dict[str, SimResult], path: Path, cost_source: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    end = max(s.finish_time for r in results.values() for s in r.seqs)
    fig, axes = plt.subplots(len(results), 1, figsize=(8, 2 + 1.1 * len(results) * 2), dpi=110, sharex=True)
    for ax, (name, res) in zip(axes, results.items(), strict=True):
        for seq in res.seqs:
            y = seq.seq_id
            ax.barh(y, seq.first_scheduled_time - seq.arrival_time, left=seq.arrival_time, color="#DDDDDD",
                    height=0.6)
        for st in res.steps:
            for sid, _, prefill in st.work:
                ax.barh(sid, st.end - st.start, left=st.start, height=0.6,
                        color="#1F4E79" if prefill else "#7FB3E0", linewidth=0)
        m = res.metrics()
        ax.set_title(f"{name} batching: {m['throughput_tok_s']:.0f} tok/s, mean TTFT {m['ttft_mean']:.2f} s, "
                     f"all done at {max(s.finish_time for s in res.seqs):.2f} s", fontsize=9)
        ax.set_yticks([s.seq_id for s in res.seqs])
        ax.set_yticklabels([f"req {s.seq_id} ({s.params.max_tokens} out)" for s in res.seqs], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, end * 1.02)
        ax.grid(True, axis="x", alpha=0.3)
    axes[-1].set_xlabel(f"time (s, simulated; cost model: {cost_source or 'see calibrate.py'})")
    axes[0].legend(handles=[Patch(color="#DDDDDD", label="waiting"), Patch(color="#1F4E79", label="prefill"),
                            Patch(color="#7FB3E0", label="decode")], fontsize=8, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    from common.cli import make_parser
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch05_scheduling.timeline", __doc__)
    parser.add_argument("--smoke", action="store_true", help="same run (it takes well under a second)")
    parser.add_argument("--json", action="store_true", help="print only the final JSON line")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args(argv)
    cost = load_cost_model()
    results = run_both(cost, args.batch_size)
    path = draw(results, reports_dir("ch05") / "timeline_static_vs_continuous.png",
                cost.meta.get("source", "calibrated"))
    rows = [{"batching": k, "tok/s": v.metrics()["throughput_tok_s"], "mean TTFT s": v.metrics()["ttft_mean"],
             "makespan s": max(s.finish_time for s in v.seqs)} for k, v in results.items()]
    if not args.json:
        print_table(rows, title=f"{len(HANDFUL)} requests, batch {args.batch_size}, cost model: "
                                f"{cost.meta.get('source', 'calibrated')}")
        print(f"figure: {path}")
    emit_json({"rows": rows, "plot": str(path)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
