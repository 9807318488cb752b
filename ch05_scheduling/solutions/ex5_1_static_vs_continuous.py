"""Exercise 5.1 (book 5.2.2, 5.3.1, 5.3.2): static vs continuous batching, counted in steps.

Task: every request is present at step 0 and produces one token per step while it holds a batch slot
(a request of output length n occupies a slot for n steps). Write ``count_steps(output_lens, batch_size,
mode)``:

* ``mode="static"``: take the next ``batch_size`` requests in order; the batch runs until its longest
  member ends; only then does the next batch start (5.2.2);
* ``mode="continuous"``: a slot freed by a finished request is given to the next waiting request at the
  next step (5.3.2, Orca's iteration-level scheduling).

Return a :class:`BatchingResult`: total steps, the step at which each request produced its last token
(1-based), and slot utilisation = useful tokens / (steps x batch_size). Then run
``python -m ch05_scheduling.timeline`` and the simulator to see the same effect in seconds.
Grade: ``python -m common.grade 5.1``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchingResult:
    steps: int
    finish_step: list[int]      # per request, 1-based step of its last token
    utilization: float          # useful tokens / (steps * batch_size)


def count_steps(output_lens: list[int], batch_size: int, mode: str) -> BatchingResult:
    if batch_size < 1 or any(n < 1 for n in output_lens):
        raise ValueError("batch_size and every output length must be >= 1")
    if mode not in ("static", "continuous"):
        raise ValueError(f"mode must be 'static' or 'continuous', got {mode!r}")
    finish = [0] * len(output_lens)
    if mode == "static":
        step = 0
        for i in range(0, len(output_lens), batch_size):
            batch = range(i, min(i + batch_size, len(output_lens)))
            for j in batch:
                finish[j] = step + output_lens[j]
            step += max(output_lens[j] for j in batch)
        steps = step
    else:
        slots = [0] * batch_size            # step at which each slot becomes free
        for j, n in enumerate(output_lens):
            k = min(range(batch_size), key=lambda s: slots[s])
            finish[j] = slots[k] + n
            slots[k] += n
        steps = max(finish) if finish else 0
    useful = sum(output_lens)
    return BatchingResult(steps, finish, useful / (steps * batch_size) if steps else 0.0)
