"""Request traces for the simulator and the engine: Poisson, bursty, or ShareGPT lengths (5.3.3, 5.5).

Book sections: 5.1.1 为什么需要调度 (requests arrive at random and differ 100x in length), 5.3.3, 5.5.

A :class:`TraceRequest` is what both the simulator and a real-engine replay consume: arrival time,
prompt tokens (real ones from ShareGPT, or synthetic ids), output length (benchmarks use
``ignore_eos`` so every engine generates exactly that many tokens), priority and tenant.

* :func:`poisson_arrivals` -- exponential gaps at ``rate`` requests/s (what vLLM's benchmark uses);
* :func:`bursty_arrivals` -- gamma gaps with coefficient of variation ``cv`` > 1: the same mean rate
  arriving in clumps (vLLM's ``--burstiness`` is 1/cv^2);
* :func:`sharegpt_trace` -- lengths (and prompt tokens) from the seeded ShareGPT sample of
  ``common.datasets``; :func:`synthetic_trace` -- lengths drawn from a log-normal, no tokenizer needed.

``python -m ch05_scheduling.workload --smoke`` prints a trace's summary.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from common.cli import UsageError


@dataclass(frozen=True, slots=True)
class TraceRequest:
    request_id: int
    arrival_time: float
    prompt_token_ids: tuple[int, ...]
    output_len: int
    priority: int = 0
    tenant: str = "default"

    @property
    def prompt_len(self) -> int:
        return len(self.prompt_token_ids)


def poisson_arrivals(n: int, rate: float, seed: int = 0) -> list[float]:
    """``n`` arrival times with exponential gaps of mean ``1/rate``; ``rate=inf`` = all at time 0."""
    if rate <= 0:
        raise UsageError(f"arrival rate must be > 0, got {rate}")
    if rate == float("inf"):
        return [0.0] * n
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.expovariate(rate)
    return out


def bursty_arrivals(n: int, rate: float, cv: float = 3.0, seed: int = 0) -> list[float]:
    """Gamma-distributed gaps, mean ``1/rate``, coefficient of variation ``cv`` (1 = Poisson)."""
    if rate <= 0 or cv <= 0:
        raise UsageError("rate and cv must be > 0")
    rng = random.Random(seed)
    shape = 1.0 / (cv * cv)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.gammavariate(shape, 1.0 / (rate * shape))
    return out


def with_arrivals(trace: list[TraceRequest], arrivals: list[float]) -> list[TraceRequest]:
    if len(arrivals) != len(trace):
        raise UsageError(f"{len(trace)} requests but {len(arrivals)} arrival times")
    return [replace(r, arrival_time=a) for r, a in zip(trace, arrivals, strict=True)]


def synthetic_trace(n: int, seed: int = 0, *, mean_prompt: int = 200, mean_output: int = 120,
                    max_output: int = 256, vocab: int = 49152, tenants: int = 1) -> list[TraceRequest]:
    """Log-normal prompt/output lengths (ShareGPT-like spread), random token ids, all arriving at 0."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = max(4, min(1024, int(rng.lognormvariate(0, 0.8) * mean_prompt)))
        o = max(4, min(max_output, int(rng.lognormvariate(0, 0.8) * mean_output)))
        ids = tuple(rng.randrange(3, vocab) for _ in range(p))
        out.append(TraceRequest(i, 0.0, ids, o, tenant=f"t{i % tenants}"))
    return out


def sharegpt_trace(tokenizer, n: int, seed: int = 0, *, max_output: int = 256, max_prompt: int = 1024,
                   chat: bool = True) -> list[TraceRequest]:
    """The seeded ShareGPT sample (vLLM's filters), prompts wrapped in the chat template, all at time 0."""
    from common.chat import chat_ids
    from common.datasets import sample_workload

    reqs = sample_workload(tokenizer, n, seed, max_prompt_len=max_prompt, max_output_len=max_output)
    out = []
    for i, r in enumerate(reqs):
        ids = chat_ids(tokenizer, r.prompt) if chat else tokenizer(r.prompt, add_special_tokens=False)["input_ids"]
        out.append(TraceRequest(i, 0.0, tuple(ids[: max_prompt + 64]), r.output_len))
    return out


def main(argv: list[str] | None = None) -> int:
    from common.cli import add_common_args, make_parser
    from common.report import print_table

    parser = make_parser("python -m ch05_scheduling.workload", __doc__)
    add_common_args(parser, model=False)
    parser.add_argument("--n", type=int, default=64, help="requests")
    parser.add_argument("--rate", type=float, default=2.0, help="mean arrival rate, requests/s")
    args = parser.parse_args(argv)
    n = 8 if args.smoke else args.n
    trace = synthetic_trace(n, args.seed)
    rows = []
    for name, arr in (("poisson", poisson_arrivals(n, args.rate, args.seed)),
                      ("bursty cv=3", bursty_arrivals(n, args.rate, 3.0, args.seed))):
        gaps = [b - a for a, b in zip(arr, arr[1:], strict=False)]
        rows.append({"arrivals": name, "span_s": arr[-1], "max_gap_s": max(gaps), "min_gap_s": min(gaps)})
    print_table(rows, title=f"{n} requests at {args.rate}/s")
    print(f"prompt tokens: mean {sum(r.prompt_len for r in trace) / n:.0f}, "
          f"output tokens: mean {sum(r.output_len for r in trace) / n:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
