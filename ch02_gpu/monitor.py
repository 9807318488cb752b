"""GPU monitor with a CPU fallback (book section 2.4): sample in a background thread, live table + CSV.

    python -m ch02_gpu.monitor -- python -m ch02_gpu.roofline --smoke   # wrap any command
    python -m ch02_gpu.monitor --duration 5 --interval 0.5               # just watch the machine
    python -m ch02_gpu.monitor --counters                                # 2.4.4: what counters exist

On an NVIDIA GPU it reads NVML through ``pynvml`` (2.4.3; the same library ``nvidia-smi`` uses, 2.4.1):
utilization of SMs and of the memory controller, memory used, power, temperature, SM and memory
clocks, PCIe TX/RX throughput. Without one it says so in one sentence and samples the CPU with
``psutil`` instead: CPU utilisation, the wrapped process tree's resident memory, system memory. In
Python, :class:`Monitor` wraps a callable: ``with Monitor(csv_path=...) as m: work()``.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

from common.bench import stamp_dict
from common.cli import add_common_args, friendly_errors, make_parser
from common.paths import reports_dir
from common.report import emit_json, format_table

COUNTERS_NOTE = """\
Performance counters (2.4.4)
  NVML / nvidia-smi (this tool):  SM and memory-controller utilisation (% of time busy, NOT % of peak),
    memory used, power, temperature, clocks, throttle reasons, PCIe TX/RX, NVLink counters.
  DCGM profiling metrics (dcgmi dmon -e 1002,1003,1004,1005): SM active, SM occupancy, tensor-core
    active, DRAM active -- the fractions of peak that 'utilization' hides.
  Nsight Systems (nsys profile python ...): a timeline of kernels, copies, CPU gaps and launches.
  Nsight Compute (ncu --set full): per-kernel achieved bandwidth and FLOP/s, roofline, stall reasons.
  On CPU: 'perf stat -e cycles,instructions,cache-misses' and 'perf record' do the same job."""


class Sampler(Protocol):
    source: str
    columns: tuple[str, ...]

    def sample(self) -> dict[str, float]: ...

    def close(self) -> None: ...


class NvmlSampler:
    """One row per GPU per sample, read from NVML."""

    source = "nvml"
    columns = ("gpu", "util_gpu_pct", "util_mem_pct", "mem_used_mb", "mem_total_mb", "power_w", "temp_c",
               "sm_clock_mhz", "mem_clock_mhz", "pcie_tx_mb_s", "pcie_rx_mb_s")

    def __init__(self, index: int = 0) -> None:
        import pynvml

        self.nv = pynvml
        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.index = index

    def sample(self) -> dict[str, float]:
        nv, h = self.nv, self.handle
        util = nv.nvmlDeviceGetUtilizationRates(h)
        mem = nv.nvmlDeviceGetMemoryInfo(h)
        row: dict[str, float] = {"gpu": self.index, "util_gpu_pct": util.gpu, "util_mem_pct": util.memory,
                                 "mem_used_mb": mem.used / 1e6, "mem_total_mb": mem.total / 1e6}
        readers = {
            "power_w": lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000,
            "temp_c": lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
            "sm_clock_mhz": lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
            "mem_clock_mhz": lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
            "pcie_tx_mb_s": lambda: nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_TX_BYTES) / 1e3,
            "pcie_rx_mb_s": lambda: nv.nvmlDeviceGetPcieThroughput(h, nv.NVML_PCIE_UTIL_RX_BYTES) / 1e3,
        }
        for name, read in readers.items():
            try:
                row[name] = float(read())
            except nv.NVMLError:  # not every board exposes every counter (e.g. power on some cloud VMs)
                row[name] = float("nan")
        return row

    def close(self) -> None:
        self.nv.nvmlShutdown()


class CpuSampler:
    """CPU utilisation, the watched process tree's RSS and system memory, from psutil."""

    source = "psutil"
    columns = ("cpu_pct", "proc_rss_mb", "sys_mem_used_mb", "sys_mem_pct")

    def __init__(self, pid: int | None = None) -> None:
        self.proc = psutil.Process(pid)
        psutil.cpu_percent(None)  # the first call only starts the interval

    def _tree_rss(self) -> float:
        total = 0
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            return float("nan")
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total / 1e6

    def sample(self) -> dict[str, float]:
        vm = psutil.virtual_memory()
        return {"cpu_pct": psutil.cpu_percent(None), "proc_rss_mb": self._tree_rss(),
                "sys_mem_used_mb": (vm.total - vm.available) / 1e6, "sys_mem_pct": vm.percent}

    def close(self) -> None:
        pass


def nvml_reason() -> str | None:
    """None when NVML sees a GPU; otherwise one sentence saying why not."""
    try:
        import pynvml

        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ImportError...
        return f"No NVIDIA GPU is visible (NVML: {type(exc).__name__}), so this monitors the CPU and process memory."
    return None if n > 0 else "NVML found no GPU, so this monitors the CPU and process memory."


def pick_sampler(force_cpu: bool = False, pid: int | None = None) -> tuple[Sampler, str | None]:
    """The NVML sampler when a GPU is there, else the psutil one and the sentence that explains why."""
    reason = "--cpu was given: monitoring the CPU." if force_cpu else nvml_reason()
    if reason is None:
        return NvmlSampler(), None
    return CpuSampler(pid), reason


@dataclass
class Monitor:
    """Background sampling into memory and (optionally) a CSV file; use as a context manager."""

    interval: float = 0.5
    csv_path: Path | None = None
    sampler: Sampler | None = None
    live: bool = False  # print a line per sample
    samples: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ValueError("interval must be positive")
        if self.sampler is None:
            self.sampler, self.note = pick_sampler()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ch02-monitor", daemon=True)
        self._t0 = 0.0

    @property
    def columns(self) -> tuple[str, ...]:
        return ("time_s", *self.sampler.columns)

    def _record(self) -> None:
        row = {"time_s": round(time.perf_counter() - self._t0, 4), **self.sampler.sample()}
        self.samples.append(row)
        if self._writer:
            self._writer.writerow(row)
            self._file.flush()
        if self.live:  # a live table: header once, then one fixed-width line per sample
            width = max(len(c) for c in self.columns) + 1
            if len(self.samples) == 1:
                print("".join(c.rjust(width) for c in self.columns), flush=True)
            print("".join((f"{row[c]:.1f}" if isinstance(row[c], float) else str(row[c])).rjust(width)
                          for c in self.columns), flush=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._record()

    def start(self) -> Monitor:
        self._file = self._writer = None
        if self.csv_path:
            Path(self.csv_path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.csv_path, "w", newline="")  # noqa: SIM115 - closed in stop()
            self._writer = csv.DictWriter(self._file, fieldnames=list(self.columns))
            self._writer.writeheader()
        self._t0 = time.perf_counter()
        self._record()  # a sample at t=0: the baseline
        self._thread.start()
        return self

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join()
        self._record()  # and one at the end
        if self._file:
            self._file.close()
        self.sampler.close()
        return self.samples

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def summary(self) -> list[dict[str, Any]]:
        """Mean and max of every numeric column."""
        out = []
        for col in self.sampler.columns:
            vals = [s[col] for s in self.samples if isinstance(s.get(col), (int, float)) and s[col] == s[col]]
            if vals:
                out.append({"metric": col, "mean": sum(vals) / len(vals), "max": max(vals)})
        return out


def monitor_command(cmd: list[str], interval: float, csv_path: Path, force_cpu: bool = False,
                    live: bool = False) -> tuple[int, Monitor]:
    """Run ``cmd`` and sample while it runs; returns its exit code and the monitor."""
    proc = subprocess.Popen(cmd)
    sampler, note = pick_sampler(force_cpu, pid=proc.pid)
    mon = Monitor(interval=interval, csv_path=csv_path, sampler=sampler, live=live, note=note)
    with mon:
        rc = proc.wait()
    return rc, mon


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch02_gpu.monitor", __doc__)
    add_common_args(parser, model=False, smoke=True)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to watch when no command is given")
    parser.add_argument("--csv", type=Path, default=None, help="CSV path (default: reports/ch02/monitor.csv)")
    parser.add_argument("--cpu", action="store_true", help="force the psutil (CPU) sampler")
    parser.add_argument("--live", action="store_true", help="print every sample as it is taken")
    parser.add_argument("--counters", action="store_true", help="explain which performance counters exist")
    parser.add_argument("command", nargs="*", help="command to run and monitor (after --)")
    args = parser.parse_args(argv)
    if args.counters:
        print(COUNTERS_NOTE)
        return 0
    with friendly_errors():
        if args.interval <= 0 or args.duration <= 0:
            print("error: --interval and --duration must be positive", file=sys.stderr)
            return 2
        csv_path = args.csv or reports_dir("ch02") / "monitor.csv"
        note = nvml_reason() if not args.cpu else None
        if note:  # say it before the run, not after
            print(note, file=sys.stderr, flush=True)
        rc = 0
        if args.command:
            rc, mon = monitor_command(args.command, args.interval, csv_path, args.cpu, args.live)
        else:
            sampler, note = pick_sampler(args.cpu)
            mon = Monitor(interval=args.interval, csv_path=csv_path, sampler=sampler, live=args.live, note=note)
            with mon:
                time.sleep(min(args.duration, 1.0) if args.smoke else args.duration)
        if not args.json:
            print(format_table(mon.summary(), title=f"{len(mon.samples)} samples from {mon.sampler.source}"))
            print(f"CSV: {csv_path}")
        emit_json({"source": mon.sampler.source, "samples": len(mon.samples), "csv": str(csv_path),
                   "command_rc": rc, "summary": {r["metric"]: {"mean": r["mean"], "max": r["max"]}
                                                 for r in mon.summary()},
                   "hardware": stamp_dict()})
        return rc


if __name__ == "__main__":
    raise SystemExit(main())
