"""The benchmark harness: warm up, synchronise, repeat, summarise, and stamp the hardware.

Numbers in this repository are measured on the reader's machine and compared as ratios inside one
run. :func:`time_fn` is the one timer everybody uses; :func:`hardware_stamp` is the one description of
the machine every JSON line carries; :func:`measure_read_bandwidth` gives the denominator of MBU
(model bandwidth utilisation = bytes that must be read per second / bytes the memory can deliver).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from common.device import synchronize


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` untimed ones."""

    samples: tuple[float, ...]
    warmup: int

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def stdev(self) -> float:
        return statistics.stdev(self.samples) if len(self.samples) > 1 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"mean_s": self.mean, "median_s": self.median, "best_s": self.best, "stdev_s": self.stdev,
                "repeats": len(self.samples)}


def time_fn(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1,
            device: torch.device | str = "cpu") -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed ones, synchronising the device."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    for _ in range(warmup):
        fn()
    synchronize(device)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        samples.append(time.perf_counter() - t0)
    return Timing(tuple(samples), warmup)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), the same definition numpy uses by default."""
    if not values:
        return float("nan")
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(values: Sequence[float], qs: Sequence[float] = (50, 90, 99)) -> dict[str, float]:
    """Mean and the given percentiles of a list of latencies, keyed ``mean``, ``p50``, ``p90``..."""
    out = {"mean": statistics.fmean(values) if values else float("nan")}
    for q in qs:
        out[f"p{int(q) if float(q).is_integer() else q}"] = percentile(values, q)
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return None


@dataclass(frozen=True)
class HardwareStamp:
    cpu: str
    cores: int
    threads: int
    gpu: str | None
    torch: str
    python: str
    os: str

    def short(self) -> str:
        """A folder-safe name, e.g. ``cpu-2c-intel-xeon`` or ``gpu-nvidia-h100``."""
        base = f"gpu-{self.gpu}" if self.gpu else f"cpu-{self.cores}c-{self.cpu}"
        safe = "".join(ch.lower() if ch.isalnum() else "-" for ch in base)
        while "--" in safe:
            safe = safe.replace("--", "-")
        return safe.strip("-")[:60]


def hardware_stamp() -> HardwareStamp:
    return HardwareStamp(
        cpu=cpu_model(),
        cores=os.cpu_count() or 1,
        threads=torch.get_num_threads(),
        gpu=gpu_name(),
        torch=torch.__version__,
        python=platform.python_version(),
        os=f"{platform.system()} {platform.release()}",
    )


def stamp_dict(**extra: Any) -> dict[str, Any]:
    """The hardware stamp as a dict, plus e.g. ``dtype='fp32'``: put it in every JSON line."""
    d = asdict(hardware_stamp())
    d.update(extra)
    return d


def interleaved(names: Sequence[str], repeats: int) -> Iterator[str]:
    """Each name ``repeats`` times in the order A B, B A, A B, ...: slow drift in a shared machine's speed
    then hits every variant alike (run them in this order and compare medians)."""
    names = list(names)
    for i in range(repeats):
        yield from (names if i % 2 == 0 else names[::-1])


def measure_read_bandwidth(device: torch.device | str = "cpu", megabytes: int = 256, repeats: int = 5) -> float:
    """Achievable memory read bandwidth in bytes/s: the best of ``repeats`` full reductions of a big buffer.

    A sum reads every byte once and does one add per 4 bytes, so it is bound by memory, not arithmetic.
    The buffer must be much larger than the last-level cache (default 256 MB).
    """
    device = torch.device(device)
    n = megabytes * (1 << 20) // 4
    x = torch.ones(n, dtype=torch.float32, device=device)
    t = time_fn(lambda: x.sum(), repeats=repeats, warmup=1, device=device)
    return n * 4 / t.best


def mbu(bytes_per_token: float, tokens_per_s: float, bandwidth_bytes_per_s: float) -> float:
    """Model bandwidth utilisation: achieved bytes/s over what the memory can deliver (0..1)."""
    if bandwidth_bytes_per_s <= 0:
        raise ValueError("bandwidth must be positive")
    return bytes_per_token * tokens_per_s / bandwidth_bytes_per_s
