"""The GPU table of book section 2.6: one row per card in ``ch02_gpu/data/gpus.csv``.

Each row carries memory, bandwidth, dense FP16/BF16/FP8 tensor TFLOPS, TDP, a dated typical cloud price
per GPU-hour and the source of both the specs and the price. Prices move monthly: the file is a dated
snapshot, and ``python -m ch02_gpu.specs --price NAME=USD`` overrides any of them.

    python -m ch02_gpu.gpus            # print the table
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from common.cli import add_common_args, make_parser
from common.report import emit_json, print_table

DATA_FILE = Path(__file__).resolve().parent / "data" / "gpus.csv"


class UnknownGPU(KeyError):
    """A GPU name that is not in the table; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class GPU:
    name: str
    aliases: tuple[str, ...]
    vendor: str
    segment: str
    memory_gb: float  # vendor GB = 1e9 bytes
    bandwidth_gb_s: float  # peak HBM/GDDR bandwidth, 1e9 bytes/s
    fp16_tflops: float  # dense tensor-core throughput
    bf16_tflops: float
    fp8_tflops: float | None  # None: no FP8 tensor cores
    tdp_w: float
    pcie: str
    price_usd_per_hour: float
    price_date: str
    price_source: str
    spec_source: str

    @property
    def memory_bytes(self) -> float:
        return self.memory_gb * 1e9

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return self.bandwidth_gb_s * 1e9

    def flops(self, dtype: str) -> float:
        """Dense tensor FLOP/s for a compute dtype; FP8/INT8/INT4 weights fall back to 16-bit math
        where the card has no FP8 units (weight-only quantisation dequantises to 16-bit anyway)."""
        if dtype in ("fp8",) and self.fp8_tflops:
            return self.fp8_tflops * 1e12
        if dtype == "fp16":
            return self.fp16_tflops * 1e12
        return self.bf16_tflops * 1e12


def _float(text: str) -> float | None:
    return float(text) if text.strip() else None


def load_gpus(path: Path = DATA_FILE) -> list[GPU]:
    """All rows of the data file, in file order."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [GPU(name=r["name"], aliases=tuple(a for a in r["aliases"].split(";") if a), vendor=r["vendor"],
                segment=r["segment"], memory_gb=float(r["memory_gb"]), bandwidth_gb_s=float(r["bandwidth_gb_s"]),
                fp16_tflops=float(r["fp16_tflops"]), bf16_tflops=float(r["bf16_tflops"]),
                fp8_tflops=_float(r["fp8_tflops"]), tdp_w=float(r["tdp_w"]), pcie=r["pcie"],
                price_usd_per_hour=float(r["price_usd_per_hour"]), price_date=r["price_date"],
                price_source=r["price_source"], spec_source=r["spec_source"]) for r in rows]


def _key(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def find_gpu(name: str, gpus: list[GPU] | None = None) -> GPU:
    """Look a card up by name or alias, ignoring case, spaces and dashes (``h100``, ``A100 80GB``)."""
    gpus = gpus if gpus is not None else load_gpus()
    want = _key(name)
    for g in gpus:
        if want == _key(g.name) or want in {_key(a) for a in g.aliases}:
            return g
    raise UnknownGPU(f"unknown GPU {name!r}; known: {', '.join(g.name for g in gpus)}")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch02_gpu.gpus", __doc__)
    add_common_args(parser, model=False, smoke=True)
    args = parser.parse_args(argv)
    gpus = load_gpus()
    rows = [{"gpu": g.name, "mem GB": g.memory_gb, "BW GB/s": g.bandwidth_gb_s, "BF16 TF": g.bf16_tflops,
             "FP8 TF": g.fp8_tflops or "-", "TDP W": g.tdp_w, "$/h": g.price_usd_per_hour,
             "price date": g.price_date, "ridge FLOP/B": round(g.bf16_tflops * 1e3 / g.bandwidth_gb_s)}
            for g in gpus]
    if not args.json:
        print_table(rows, title="GPU specs (vendor datasheets, dense tensor math) and dated cloud prices")
        print(f"sources: see the price_source and spec_source columns of {DATA_FILE}")
    emit_json({"gpus": [g.name for g in gpus], "data_file": str(DATA_FILE)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
