"""Exercise 5.1, plausible but wrong: continuous batching refills freed slots only when *all* of the
batch's slots are free at once (which is static batching again), and utilisation counts steps x requests."""

from ch05_scheduling.solutions.ex5_1_static_vs_continuous import BatchingResult


def count_steps(output_lens, batch_size, mode):
    if batch_size < 1 or any(n < 1 for n in output_lens):
        raise ValueError("bad input")
    if mode not in ("static", "continuous"):
        raise ValueError(mode)
    finish, step = [], 0
    for i in range(0, len(output_lens), batch_size):
        batch = output_lens[i:i + batch_size]
        finish += [step + n for n in batch]
        step += max(batch)
    return BatchingResult(step, finish, sum(output_lens) / (step * len(output_lens)))
