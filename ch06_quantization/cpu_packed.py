"""fp32 weights laid out for decode: one sequential stream per thread (book 6.2, 9.3; used by cpu_decode).

A batch-1 decode step reads every weight once, so its speed is how fast the GEMVs stream memory.
``cpu_gemv`` reads row-major rows in pairs: each thread walks two rows at once, and the hardware
prefetcher sees two streams that end every 2-6 KB. This layout turns a matrix into ONE stream per
thread: blocks of 4 rows, and inside a block, for each group of 8 columns, the 4 rows' 8 values (128 B)
one after the other:

    row-major (N, K)            ->  (N/4, K/8, 32)
    r0: a0..a7 a8..a15 ...          block 0: r0[0:8] r1[0:8] r2[0:8] r3[0:8] r0[8:16] r1[8:16] ...
    r1: b0..b7 b8..b15 ...          block 1: r4[0:8] ...

The kernel keeps one accumulator per row of the block (and per activation row, up to 3 at a time, so a
verification pass of a few tokens reads each block from memory once and from L1 after that).

Measured on the embedded model's 211 linears (``python -m ch06_quantization.cpu_packed``, 2 threads,
2026-11-26, three runs): one activation row in 24-35 ms against 35-47 ms row-major (1.2-1.45x), five
rows in 38-48 ms against 46-51 ms, eight rows in 45-47 ms against 52-63 ms. The copy costs as much memory as the fp32 weights, which is why ``cpu_decode.FusedDecoder`` makes it
optional (``packed=``) and shares it between decoders over the same blocks (``reuse=``). The layout and its
GEMV are C++ in ``csrc/packed.cpp`` (``csrc/packed.h`` for the fused decoder), built by ``cpu_kernels``.

    python -m ch06_quantization.cpu_packed          # row-major vs packed, 1..8 rows
    python -m ch06_quantization.cpu_packed --smoke
"""

from __future__ import annotations

import torch

ROWS_PER_BLOCK = 4


def _module():
    from ch06_quantization.cpu_kernels import module

    return module()


def can_pack(w: torch.Tensor) -> bool:
    """Whether ``w`` fits the layout: a 2-D fp32 matrix with rows divisible by 4 and columns by 8."""
    return w.dim() == 2 and w.dtype == torch.float32 and w.shape[0] % ROWS_PER_BLOCK == 0 and w.shape[1] % 8 == 0


def pack_rows(w: torch.Tensor) -> torch.Tensor:
    """(N, K) fp32 -> the packed copy (N/4, K/8, 32); ValueError when the shape does not fit."""
    if not can_pack(w):
        raise ValueError(f"the packed layout wants an fp32 matrix with rows divisible by {ROWS_PER_BLOCK} and "
                         f"columns by 8, not {tuple(w.shape)} {w.dtype}")
    return _module().pack_rows(w.contiguous())


def gemv_packed(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    """``x (M, K) @ w.T`` on the packed copy of ``w``: (M, N)."""
    return _module().gemv_f32_packed(x, packed)


def main(argv: list[str] | None = None) -> int:
    import time

    from ch04_kvcache.model import LlamaModel
    from ch06_quantization.cpu_gemv import _module as gemv_module
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch06_quantization.cpu_packed", __doc__)
    add_common_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        model = LlamaModel.from_pretrained(args.model, load_format=args.load_format).float().eval()
        weights = [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Linear)]
        weights = weights[:14] if args.smoke else weights
        packed = [pack_rows(w) for w in weights]
        lib = gemv_module()
        nbytes = sum(w.numel() * 4 for w in weights)

        def best(fn, repeats: int) -> float:
            out = float("inf")
            for _ in range(repeats + 1):  # the first pass warms up
                t0 = time.perf_counter()
                fn()
                out = min(out, time.perf_counter() - t0)
            return out

        rows = []
        for m in (1, 3) if args.smoke else (1, 2, 3, 5, 8):
            xs = {k: torch.randn(m, k) for k in {w.shape[1] for w in weights}}
            t_rm = best(lambda xs=xs: [lib.gemv_f32(xs[w.shape[1]], w) for w in weights], 2 if args.smoke else 5)
            t_pk = best(lambda xs=xs: [gemv_packed(xs[p.shape[1] * 8], p) for p in packed], 2 if args.smoke else 5)
            rows.append({"rows": m, "row-major ms": 1e3 * t_rm, "packed ms": 1e3 * t_pk,
                         "packed GB/s": nbytes / t_pk / 1e9, "packed vs row-major": t_rm / t_pk})
        if not args.json:
            print_table(rows, title=f"{len(weights)} linears ({nbytes / 1e6:.0f} MB fp32), one pass each, "
                                    f"{torch.get_num_threads()} threads")
        emit_json({"linears": len(weights), "fp32_mb": nbytes / 1e6, "rows": rows,
                   "packed_vs_row_major_1_row": rows[0]["packed vs row-major"],
                   "hardware": stamp_dict(dtype="fp32", torch_threads=torch.get_num_threads())})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
