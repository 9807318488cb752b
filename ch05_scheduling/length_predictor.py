"""Predicting output length for shortest-job-first (5.5.2): an oracle, and a simple predictor.

Book section: 5.5.2 最短作业优先 (SJF needs the job length before the job runs; LLM output length is
unknown until EOS, so real systems predict it -- e.g. with a small classifier over length buckets).

:class:`BucketPredictor` is the simplest predictor that uses the prompt: it splits training requests
into prompt-length quantile buckets and predicts the median output length of the request's bucket.
:func:`oracle` returns the true lengths (what no real server has). The simulator compares FCFS, SJF
with the oracle, SJF with this predictor and SJF with deliberately wrong predictions, which is what a
wrong prediction costs.

    python -m ch05_scheduling.length_predictor
"""

from __future__ import annotations

import bisect
import statistics
from dataclasses import dataclass

from ch05_scheduling.workload import TraceRequest


@dataclass
class BucketPredictor:
    edges: list[int]          # upper prompt-length edge of each bucket but the last
    medians: list[int]

    @classmethod
    def fit(cls, train: list[TraceRequest], buckets: int = 4) -> BucketPredictor:
        if len(train) < buckets:
            raise ValueError(f"need at least {buckets} training requests, got {len(train)}")
        ordered = sorted(train, key=lambda r: r.prompt_len)
        size = len(ordered) / buckets
        groups = [ordered[int(i * size):int((i + 1) * size)] for i in range(buckets)]
        edges = [g[-1].prompt_len for g in groups[:-1]]
        medians = [int(statistics.median(r.output_len for r in g)) for g in groups]
        return cls(edges, medians)

    def predict(self, prompt_len: int) -> int:
        return self.medians[bisect.bisect_left(self.edges, prompt_len)]

    def predict_trace(self, trace: list[TraceRequest]) -> dict[int, int]:
        return {r.request_id: self.predict(r.prompt_len) for r in trace}


def oracle(trace: list[TraceRequest]) -> dict[int, int]:
    return {r.request_id: r.output_len for r in trace}


def mean_abs_error(pred: dict[int, int], trace: list[TraceRequest]) -> float:
    return statistics.fmean(abs(pred[r.request_id] - r.output_len) for r in trace)


def main(argv: list[str] | None = None) -> int:
    from ch05_scheduling.workload import synthetic_trace
    from common.cli import make_parser

    make_parser("python -m ch05_scheduling.length_predictor", __doc__).parse_args(argv)
    train, test = synthetic_trace(400, seed=100), synthetic_trace(100, seed=1)
    p = BucketPredictor.fit(train)
    const = {r.request_id: int(statistics.median(t.output_len for t in train)) for r in test}
    print(f"bucket predictor: edges {p.edges}, medians {p.medians}")
    print(f"mean |error| on a held-out trace: bucket {mean_abs_error(p.predict_trace(test), test):.1f} tokens, "
          f"constant median {mean_abs_error(const, test):.1f}, oracle 0.0")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
