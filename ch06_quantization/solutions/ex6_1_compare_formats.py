"""Exercise 6.1 (book 6.1/6.3): compare number formats for speed and accuracy on one real weight.

For each format in :data:`FORMATS`, store ``W`` in it, then compute ``Y = X W^T`` the way an inference
kernel would on this machine (fp16/bf16: cast both and multiply; fp8/int8/int4: dequantize to fp32 and
multiply), and report the output error against fp32, the storage bytes and the median matmul time.
Run ``python -m ch06_quantization.solutions.ex6_1_compare_formats``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ch06_quantization.formats import round_trip
from ch06_quantization.rtn import QuantLinear, QuantSpec, quantize_rtn
from common.bench import time_fn

FORMATS = ("fp32", "fp16", "bf16", "fp8-e4m3", "int8", "int4-g64")
BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "fp8-e4m3": 8, "int8": 8, "int4-g64": 4}


@dataclass
class FormatResult:
    format: str
    bytes: int  # weight storage incl. scales
    output_rel_err: float  # ||X W^T - X W_hat^T|| / ||X W^T||
    matmul_s: float  # median time of one Y = X W^T in this format


def _matmul(fmt: str, W: torch.Tensor):
    if fmt in ("fp16", "bf16"):
        dt = torch.float16 if fmt == "fp16" else torch.bfloat16
        Wd = W.to(dt)
        return (lambda X: (X.to(dt) @ Wd.T).float()), Wd.numel() * 2
    if fmt in ("int8", "int4-g64"):
        spec = QuantSpec(8, "channel", symmetric=True) if fmt == "int8" else QuantSpec(4, "group", 64)
        ql = QuantLinear(quantize_rtn(W, spec))
        return ql, ql.nbytes
    W_hat = round_trip(W, fmt)
    return (lambda X: X @ W_hat.T), W.numel() * BITS[fmt] // 8


def compare_formats(W: torch.Tensor, X: torch.Tensor, repeats: int = 3) -> list[FormatResult]:
    """One :class:`FormatResult` per entry of :data:`FORMATS` for weight ``W[out, in]``, inputs ``X[n, in]``."""
    ref = X @ W.T
    out = []
    for fmt in FORMATS:
        fn, nbytes = _matmul(fmt, W)
        with torch.no_grad():
            y = fn(X)
            t = time_fn(lambda fn=fn: fn(X), repeats=repeats, warmup=1)
        out.append(FormatResult(fmt, int(nbytes), float((y - ref).norm() / ref.norm()), t.median))
    return out


def main(argv: list[str] | None = None) -> int:
    from ch06_quantization.formats import load_weights
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch06_quantization.solutions.ex6_1_compare_formats", __doc__)
    add_common_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        name = "model.layers.5.mlp.gate_proj.weight"
        W = load_weights(args.model, names=[name])[name]
        X = torch.randn(16 if args.smoke else 256, W.shape[1])
        rows = [vars(r) for r in compare_formats(W, X)]
        if not args.json:
            print_table(rows, title=f"{name} {tuple(W.shape)}, X {tuple(X.shape)}", floatfmt=".3g")
        emit_json({"exercise": "6.1", "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
