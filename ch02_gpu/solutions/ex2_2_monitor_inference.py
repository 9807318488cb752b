"""Exercise 2.2 (book section 2.4, 动手练习 练习2.2): monitor a real inference task and plot its trace.

Run the embedded model generating text while :class:`ch02_gpu.monitor.Monitor` samples in the
background (NVML on a GPU, psutil on CPU), write the samples to a CSV, and plot utilisation and memory
against time. Read the trace: when is the model loaded, where does generation start, is utilisation
steady (memory-bound decode) or spiky (overhead between steps)?

Grade: ``make grade EX=2.2``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ch02_gpu.monitor import Monitor


@dataclass
class GenerationTrace:
    text: str  # the generated continuation
    new_tokens: int
    seconds: float
    source: str  # "nvml" or "psutil"
    samples: list[dict[str, Any]] = field(default_factory=list)


def monitor_generation(model, tokenizer, prompt: str, max_new_tokens: int = 32, interval: float = 0.1,
                       csv_path: str | Path | None = None) -> GenerationTrace:
    """Greedy-generate ``max_new_tokens`` from ``prompt`` while sampling the machine every ``interval`` s."""
    ids = tokenizer(prompt, return_tensors="pt").input_ids  # (1, P)
    mon = Monitor(interval=interval, csv_path=Path(csv_path) if csv_path else None)
    with mon:
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=tokenizer.eos_token_id)
        seconds = time.perf_counter() - t0
    new = out[0, ids.shape[1]:]
    return GenerationTrace(tokenizer.decode(new, skip_special_tokens=True), int(new.numel()), seconds,
                           mon.sampler.source, mon.samples)


def plot_trace(trace: GenerationTrace, path: str | Path) -> Path:
    """Utilisation (left axis) and memory (right axis) against time, written to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    util, mem = ("util_gpu_pct", "mem_used_mb") if trace.source == "nvml" else ("cpu_pct", "proc_rss_mb")
    t = [s["time_s"] for s in trace.samples]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(t, [s[util] for s in trace.samples], color="#4C72B0", marker="o", markersize=3, label=util)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(util)
    ax2 = ax.twinx()
    ax2.plot(t, [s[mem] for s in trace.samples], color="#DD8452", marker="s", markersize=3, label=mem)
    ax2.set_ylabel(mem)
    ax.set_title(f"{trace.new_tokens} tokens in {trace.seconds:.1f} s ({trace.source})")
    fig.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
