"""Exercise 2.2 (book section 2.4, 动手练习 练习2.2): monitor a real inference task and plot its trace.

Run the embedded model generating text while :class:`ch02_gpu.monitor.Monitor` samples in the
background (NVML on a GPU, psutil on CPU), write the samples to a CSV, and plot utilisation and memory
against time. Read the trace: when is the model loaded, where does generation start, is utilisation
steady (memory-bound decode) or spiky (overhead between steps)?

Grade: ``make grade EX=2.2``.
"""

from __future__ import annotations

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
    raise NotImplementedError("exercise 2.2: wrap model.generate in a ch02_gpu.monitor.Monitor")


def plot_trace(trace: GenerationTrace, path: str | Path) -> Path:
    """Utilisation (left axis) and memory (right axis) against time, written to a PNG."""
    raise NotImplementedError("exercise 2.2: plot the samples with matplotlib (Agg backend) and save a PNG")
