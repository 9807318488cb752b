"""Exercise 5.1, a different correct answer: simulate step by step with a list of running requests
(remaining tokens) and a queue, instead of computing finish times in closed form."""

from collections import deque
from dataclasses import dataclass


@dataclass
class Result:
    steps: int
    finish_step: list
    utilization: float


def count_steps(output_lens, batch_size, mode):
    if mode not in {"static", "continuous"}:
        raise ValueError(f"unknown mode {mode}")
    if batch_size <= 0 or min(output_lens, default=1) <= 0:
        raise ValueError("lengths and batch size must be positive")
    queue, running, finish, step = deque(enumerate(output_lens)), {}, [0] * len(output_lens), 0
    while queue or running:
        if mode == "continuous" or not running:
            while queue and len(running) < batch_size:
                i, n = queue.popleft()
                running[i] = n
        step += 1
        for i in list(running):
            running[i] -= 1
            if running[i] == 0:
                finish[i] = step
                del running[i]
    return Result(step, finish, sum(output_lens) / (step * batch_size) if step else 0.0)
