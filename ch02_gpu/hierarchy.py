"""Memory hierarchy and the PCIe bridge (book sections 2.2.2, 2.2.3, 2.2.5), measured.

    python -m ch02_gpu.hierarchy            # read bandwidth for working sets of 256 KB .. 256 MB
    python -m ch02_gpu.hierarchy --smoke

A working set that fits in a cache is read faster than one that must come from DRAM (or from HBM on a
GPU, whose L2 is 40-60 MB): the curve steps down at each cache size. Every decode step of a model
bigger than the last-level cache reads from the slowest level, which is why bandwidth, not FLOPs,
sets decode speed (2.2.4). On a GPU it also times host-to-device copies (PCIe, pageable vs pinned).
Small buffers are read many times per timed call so that call overhead does not dominate.
"""

from __future__ import annotations

import torch

from common.bench import stamp_dict, time_fn
from common.cli import add_common_args, friendly_errors, make_parser
from common.device import has_cuda
from common.paths import reports_dir
from common.report import emit_json, print_table, save_plot


def read_bandwidth(nbytes: int, device: str = "cpu", repeats: int = 5, per_call: int = 64 << 20) -> float:
    """Bytes/s reading a buffer of ``nbytes`` (summing it), looped so each timed call reads ``per_call``."""
    x = torch.ones(max(1, nbytes // 4), device=device)
    loops = max(1, per_call // nbytes)

    def fn() -> None:
        for _ in range(loops):
            x.sum()

    t = time_fn(fn, repeats=repeats, warmup=1, device=device)
    return nbytes * loops / t.best


def pcie_bandwidth(nbytes: int = 256 << 20) -> dict[str, float]:
    """Host-to-device copy bytes/s from pageable and from pinned memory (needs CUDA)."""
    out = {}
    for name, pin in (("pageable", False), ("pinned", True)):
        host = torch.ones(nbytes // 4, pin_memory=pin)
        t = time_fn(lambda h=host: h.to("cuda", non_blocking=True), repeats=5, device="cuda")
        out[name] = nbytes / t.best
    return out


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch02_gpu.hierarchy", __doc__)
    add_common_args(parser, model=False, smoke=True)
    args = parser.parse_args(argv)
    with friendly_errors():
        sizes_kb = [256, 4096, 32768] if args.smoke else [256, 1024, 4096, 16384, 65536, 262144]
        per_call = (16 << 20) if args.smoke else (64 << 20)
        bws = [read_bandwidth(kb << 10, repeats=2 if args.smoke else 5, per_call=per_call) for kb in sizes_kb]
        rows = [{"working set": f"{kb // 1024} MB" if kb >= 1024 else f"{kb} KB", "GB/s": bw / 1e9}
                for kb, bw in zip(sizes_kb, bws, strict=True)]
        png = save_plot(reports_dir("ch02") / "hierarchy.png", {"read": ([kb / 1024 for kb in sizes_kb],
                                                                       [b / 1e9 for b in bws])},
                        title="read bandwidth vs working set (this CPU)", xlabel="working set (MB)",
                        ylabel="GB/s", logx=True)
        pcie = pcie_bandwidth(64 << 20 if args.smoke else 256 << 20) if has_cuda() else None
        if not args.json:
            print_table(rows, title="2.2.3: read bandwidth by working-set size (measured)")
            if pcie:
                print_table([{"copy": k, "GB/s": v / 1e9} for k, v in pcie.items()],
                            title="2.2.5: host -> GPU over PCIe")
            else:
                print("No CUDA GPU here: the PCIe copy test (2.2.5) is skipped.")
            print(f"plot: {png}")
        emit_json({"sizes_kb": sizes_kb, "read_bytes_per_s": bws, "pcie_bytes_per_s": pcie, "plot": str(png),
                   "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
