"""Exercise 5.1 (book 5.2.2, 5.3.1, 5.3.2): static vs continuous batching, counted in steps.

Task: every request is present at step 0 and produces one token per step while it holds a batch slot
(a request of output length n occupies a slot for n steps). Write ``count_steps(output_lens, batch_size,
mode)``:

* ``mode="static"``: take the next ``batch_size`` requests in order; the batch runs until its longest
  member ends; only then does the next batch start (5.2.2);
* ``mode="continuous"``: a slot freed by a finished request is given to the next waiting request at the
  next step (5.3.2, Orca's iteration-level scheduling).

Return a :class:`BatchingResult`: total steps, the step at which each request produced its last token
(1-based), and slot utilisation = useful tokens / (steps x batch_size). Raise ``ValueError`` for a
batch size or output length below 1 or an unknown mode. Then run ``python -m ch05_scheduling.timeline``
and the simulator to see the same effect in seconds. Grade: ``python -m common.grade 5.1``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchingResult:
    steps: int
    finish_step: list[int]      # per request, 1-based step of its last token
    utilization: float          # useful tokens / (steps * batch_size)


def count_steps(output_lens: list[int], batch_size: int, mode: str) -> BatchingResult:
    raise NotImplementedError("exercise 5.1: simulate static and continuous batching step by step")
