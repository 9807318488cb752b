"""Scheduling policies behind one interface, shared by the real engine and the simulator (5.2, 5.5).

Book sections: 5.2.1 FIFO, 5.2.2 静态批处理, 5.3 Continuous Batching, 5.4.4 优先级队列,
5.5.1 优先级调度 (with aging), 5.5.2 SJF, 5.5.3 轮询调度 (round robin / fair share), 5.5.4 自适应调度.

A policy answers three questions for :class:`ch05_scheduling.scheduler.Scheduler`, nothing else:

1. *May new requests join the running batch now?* (:meth:`Policy.admission_open`) -- this is the
   batching mode: ``continuous`` (any step, the Orca/vLLM idea), ``static`` (only when the previous batch
   has completely finished), ``dynamic`` (static, but the batch waits until it is full or its oldest
   request has waited ``timeout_s``).
2. *In which order?* (:meth:`Policy.order`) -- FCFS, priority with aging, shortest-job-first on the
   predicted output length, round robin over tenants, fair share (least service first, VTC-style), or
   adaptive (FCFS at low load, SJF when the queue is long).
3. *Whom to evict when KV blocks run out?* (:meth:`Policy.victim`) -- the least deserving running
   request under the same order.

Because the scheduler (and hence the policy) is the same object in the engine and in the simulator, a
policy measured in simulation is the policy that runs for real. ``python -m ch05_scheduling.policies``
lists them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field

from ch05_scheduling.sequence import Sequence
from common.errors import UsageError

BATCHING_MODES = ("continuous", "static", "dynamic")

SortKey = Callable[[Sequence, float], tuple]


# ---------------------------------------------------------------------------- orderings


def fcfs_key(seq: Sequence, now: float) -> tuple:
    return (seq.arrival_time, seq.seq_id)


@dataclass
class PriorityOrder:
    """Lower ``priority`` first; waiting lowers the effective value by ``aging_per_s`` per second.

    Without aging a steady stream of high-priority requests starves the rest forever; with it every
    request's effective priority eventually beats any newcomer's (5.5.1).
    """

    aging_per_s: float = 1.0

    def key(self, seq: Sequence, now: float) -> tuple:
        waited = max(now - seq.arrival_time, 0.0)
        return (seq.priority - self.aging_per_s * waited, seq.arrival_time, seq.seq_id)


def sjf_key(seq: Sequence, now: float) -> tuple:
    """Shortest (predicted) remaining output first; a prefill-heavy prompt counts a little too."""
    return (seq.remaining_output_len, seq.arrival_time, seq.seq_id)


@dataclass
class FairShareOrder:
    """Virtual token counter (Sheng et al., "Fairness in Serving LLMs", OSDI'24): the tenant that has
    received the least weighted service goes first (input tokens weigh 1, output tokens 2)."""

    input_weight: float = 1.0
    output_weight: float = 2.0
    served: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def key(self, seq: Sequence, now: float) -> tuple:
        return (self.served[seq.tenant], seq.arrival_time, seq.seq_id)

    def on_service(self, seq: Sequence, prefill_tokens: int, decode_tokens: int) -> None:
        self.served[seq.tenant] += self.input_weight * prefill_tokens + self.output_weight * decode_tokens


# ---------------------------------------------------------------------------- the policy


@dataclass
class Policy:
    """Batching mode + order (+ optional hard batch size). See the module docstring."""

    name: str
    batching: str = "continuous"
    key: SortKey = fcfs_key
    batch_size: int | None = None        # caps the running batch (FIFO = 1); None = scheduler's max_num_seqs
    timeout_s: float = 0.0               # dynamic batching: longest wait before a partial batch starts
    fair: FairShareOrder | None = None   # service accounting for fair share
    round_robin: bool = False
    adaptive_threshold: int | None = None  # adaptive: SJF when more than this many requests wait
    _last_tenant: str | None = None

    def __post_init__(self) -> None:
        if self.batching not in BATCHING_MODES:
            raise UsageError(f"unknown batching mode {self.batching!r}; choose one of {', '.join(BATCHING_MODES)}")
        if self.timeout_s < 0:
            raise UsageError("timeout_s must be >= 0")

    # -- 1. admission -------------------------------------------------------------------
    def admission_open(self, now: float, running: Seq[Sequence], waiting: Seq[Sequence], max_seqs: int) -> bool:
        if self.batching == "continuous":
            return True
        if running:                      # static and dynamic: the batch in flight must drain first
            return False
        if self.batching == "static":
            return True
        cap = min(self.batch_size or max_seqs, max_seqs)
        oldest = min((s.arrival_time for s in waiting), default=now)
        return len(waiting) >= cap or now - oldest >= self.timeout_s

    def next_wakeup(self, now: float, running: Seq[Sequence], waiting: Seq[Sequence]) -> float | None:
        """When admission can open by the clock alone (dynamic batching's timeout); None if never."""
        if self.batching != "dynamic" or running or not waiting:
            return None
        return min(s.arrival_time for s in waiting) + self.timeout_s

    def max_running(self, max_seqs: int) -> int:
        return min(self.batch_size or max_seqs, max_seqs)

    # -- 2. order -----------------------------------------------------------------------
    def order(self, seqs: Seq[Sequence], now: float, *, queue_len: int | None = None) -> list[Sequence]:
        key = self.key
        if self.adaptive_threshold is not None:
            busy = (queue_len if queue_len is not None else len(seqs)) > self.adaptive_threshold
            key = sjf_key if busy else fcfs_key
        ordered = sorted(seqs, key=lambda s: key(s, now))
        if self.round_robin:
            ordered = self._interleave_tenants(ordered)
        return ordered

    def _interleave_tenants(self, ordered: list[Sequence]) -> list[Sequence]:
        """Round robin: one request per tenant in turn, starting after the tenant served last."""
        queues: dict[str, list[Sequence]] = {}
        for s in ordered:
            queues.setdefault(s.tenant, []).append(s)
        tenants = sorted(queues)
        if self._last_tenant in tenants:
            i = tenants.index(self._last_tenant) + 1
            tenants = tenants[i:] + tenants[:i]
        out: list[Sequence] = []
        while any(queues[t] for t in tenants):
            for t in tenants:
                if queues[t]:
                    out.append(queues[t].pop(0))
        return out

    # -- 3. eviction --------------------------------------------------------------------
    def victim(self, running: Seq[Sequence], now: float) -> Sequence:
        """The running request to preempt when blocks run out: the last one in this policy's order."""
        return self.order(running, now)[-1]

    # -- bookkeeping hooks ------------------------------------------------------------------
    def on_admit(self, seq: Sequence) -> None:
        self._last_tenant = seq.tenant

    def on_service(self, seq: Sequence, prefill_tokens: int, decode_tokens: int) -> None:
        if self.fair is not None:
            self.fair.on_service(seq, prefill_tokens, decode_tokens)


POLICY_NAMES = ("fifo", "static", "dynamic", "continuous", "priority", "sjf", "round_robin", "fair_share",
                "adaptive")


def make_policy(name: str, *, timeout_s: float = 0.05, aging_per_s: float = 1.0,
                adaptive_threshold: int = 8, batch_size: int | None = None) -> Policy:
    """A policy by name (see ``POLICY_NAMES``); SJF's predictions live on the sequences themselves."""
    name = name.lower().replace("-", "_")
    if name == "fifo":          # one request at a time, in arrival order: the no-batching baseline
        return Policy("fifo", "static", fcfs_key, batch_size=1)
    if name == "static":
        return Policy("static", "static", fcfs_key, batch_size=batch_size)
    if name == "dynamic":
        return Policy("dynamic", "dynamic", fcfs_key, batch_size=batch_size, timeout_s=timeout_s)
    if name in ("continuous", "fcfs"):
        return Policy("continuous", "continuous", fcfs_key, batch_size=batch_size)
    if name == "priority":
        return Policy("priority", "continuous", PriorityOrder(aging_per_s).key, batch_size=batch_size)
    if name == "sjf":
        return Policy("sjf", "continuous", sjf_key, batch_size=batch_size)
    if name == "round_robin":
        return Policy("round_robin", "continuous", fcfs_key, batch_size=batch_size, round_robin=True)
    if name == "fair_share":
        fair = FairShareOrder()
        return Policy("fair_share", "continuous", fair.key, batch_size=batch_size, fair=fair)
    if name == "adaptive":
        return Policy("adaptive", "continuous", fcfs_key, batch_size=batch_size,
                      adaptive_threshold=adaptive_threshold)
    raise UsageError(f"unknown policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")


def main(argv: list[str] | None = None) -> int:
    from common.cli import make_parser
    from common.report import print_table

    make_parser("python -m ch05_scheduling.policies", __doc__).parse_args(argv)
    rows = []
    for n in POLICY_NAMES:
        p = make_policy(n)
        order = "adaptive" if p.adaptive_threshold is not None else (
            "round robin" if p.round_robin else getattr(p.key, "__qualname__", str(p.key)).split(".")[0])
        rows.append({"policy": n, "batching": p.batching, "order": order,
                     "batch cap": p.batch_size or "max_num_seqs"})
    print_table(rows, title="scheduling policies (one interface for engine and simulator)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
