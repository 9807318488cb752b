"""A step-time cost model: how long one engine iteration takes, from the shape of the batch (5.3.4).

Book sections: 5.3.4 性能提升分析 (why batching pays: the weights are read once per step whatever the
batch, so the fixed part of a step is shared), and the simulator of 5.3.3/5.5 that runs on this model.

A step's time is modelled as a non-negative linear function of five features of its
:class:`SchedulerOutput` (Vidur's idea, with far fewer operators)::

    t = c0                      # reading the weights + fixed overhead, paid once per step
      + c1 * num_tokens         # the linear layers' FLOPs, per new token
      + c2 * num_logits         # the LM head (vocab 49,152 x hidden), per sampled sequence
      + c3 * attn_kilo          # attention: sum over sequences of new tokens x context, / 1000
      + c4 * num_seqs           # per-sequence bookkeeping (gathers, masks, sampling)

:func:`fit` solves a relative least-squares problem under ``c >= 0`` (every subset of features, keep the
best feasible fit: exact for five features, no SciPy needed). ``calibrate.py`` measures the records;
the engine logs one :class:`StepRecord` per step, so any real run can also refit it.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ch05_scheduling.scheduler import SchedulerOutput

FEATURES = ("const", "num_tokens", "num_logits", "attn_kilo", "num_seqs")


@dataclass(frozen=True, slots=True)
class StepFeatures:
    num_tokens: int
    num_logits: int
    attn_kilo: float
    num_seqs: int
    num_prefill_tokens: int = 0

    def vector(self) -> list[float]:
        return [1.0, float(self.num_tokens), float(self.num_logits), self.attn_kilo, float(self.num_seqs)]


@dataclass(frozen=True, slots=True)
class StepRecord:
    features: StepFeatures
    seconds: float


def step_features(out: SchedulerOutput) -> StepFeatures:
    attn = sum(s.num_new_tokens * s.context_len for s in out.scheduled) / 1000.0
    return StepFeatures(out.num_batched_tokens, sum(1 for s in out.scheduled if s.sample), attn, out.num_seqs,
                        out.num_prefill_tokens)


@dataclass
class CostModel:
    """``seconds = coef . features``; ``meta`` says what it was measured on."""

    coef: list[float]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.coef) != len(FEATURES):
            raise ValueError(f"a cost model needs {len(FEATURES)} coefficients ({', '.join(FEATURES)})")

    def predict(self, f: StepFeatures) -> float:
        return float(np.dot(self.coef, f.vector()))

    def step_time(self, out: SchedulerOutput) -> float:
        return self.predict(step_features(out))

    def describe(self) -> str:
        return " + ".join(f"{c * 1e3:.3g}ms*{n}" if n != "const" else f"{c * 1e3:.3g}ms"
                          for c, n in zip(self.coef, FEATURES, strict=True))

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, path: Path) -> CostModel:
        d = json.loads(Path(path).read_text())
        return cls(list(d["coef"]), dict(d.get("meta", {})))


def fit(records: list[StepRecord], meta: dict | None = None) -> CostModel:
    """Non-negative least squares on relative error (each step weighted by 1/its time)."""
    if len(records) < len(FEATURES):
        raise ValueError(f"need at least {len(FEATURES)} step records to fit, got {len(records)}")
    x = np.array([r.features.vector() for r in records])
    y = np.array([r.seconds for r in records])
    w = 1.0 / np.maximum(y, 1e-6)
    xw, yw = x * w[:, None], y * w
    best, best_err = None, float("inf")
    for k in range(1, len(FEATURES) + 1):
        for subset in itertools.combinations(range(len(FEATURES)), k):
            cols = list(subset)
            sol, *_ = np.linalg.lstsq(xw[:, cols], yw, rcond=None)
            if (sol < 0).any():
                continue
            coef = np.zeros(len(FEATURES))
            coef[cols] = sol
            err = float(np.sum((xw @ coef - yw) ** 2))
            if err < best_err:
                best, best_err = coef, err
    assert best is not None  # the constant alone is always feasible (positive times)
    pred = x @ best
    mape = float(np.mean(np.abs(pred - y) / y)) * 100
    return CostModel([float(c) for c in best], {**(meta or {}), "fit_steps": len(records), "fit_mape_pct": mape})


def main(argv: list[str] | None = None) -> int:
    from common.cli import make_parser

    parser = make_parser("python -m ch05_scheduling.cost_model", __doc__)
    parser.add_argument("path", nargs="?", help="a saved cost model JSON to describe")
    args = parser.parse_args(argv)
    if args.path:
        print(CostModel.load(Path(args.path)).describe())
    else:
        print("features:", ", ".join(FEATURES), "(run python -m ch05_scheduling.calibrate to fit one)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
