"""Exercise 2.2, a different correct answer: explicit Monitor start/stop around a hand-written greedy loop
(no ``generate``, no KV cache), the plot as two stacked panels instead of twin axes."""

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ch02_gpu.monitor import Monitor


@dataclass
class GenerationTrace:
    text: str
    new_tokens: int
    seconds: float
    source: str
    samples: list = field(default_factory=list)


def monitor_generation(model, tokenizer, prompt, max_new_tokens=32, interval=0.1, csv_path=None):
    ids = tokenizer(prompt, return_tensors="pt").input_ids[0].tolist()
    mon = Monitor(interval=interval, csv_path=Path(csv_path) if csv_path else None).start()
    try:
        t0 = time.perf_counter()
        new = []
        with torch.no_grad():
            for _ in range(max_new_tokens):
                logits = model(torch.tensor([ids + new])).logits
                new.append(int(logits[0, -1].argmax()))
        seconds = time.perf_counter() - t0
    finally:
        samples = mon.stop()
    return GenerationTrace(tokenizer.decode(new, skip_special_tokens=True), len(new), seconds,
                           mon.sampler.source, samples)


def plot_trace(trace, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("util_gpu_pct", "mem_used_mb") if trace.source == "nvml" else ("cpu_pct", "proc_rss_mb")
    t = [s["time_s"] for s in trace.samples]
    fig, axes = plt.subplots(2, 1, sharex=True, figsize=(6, 5))
    for ax, key in zip(axes, keys, strict=True):
        ax.step(t, [s[key] for s in trace.samples], where="post")
        ax.set_ylabel(key)
    axes[-1].set_xlabel("seconds")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
