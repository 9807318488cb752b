"""Exercise 6.1, a different correct answer: its own symmetric int8 (per channel) and int4 (groups of 64)
quantisers with fp16 scales, matmuls on the dequantised weights, fp formats by rounding with torch dtypes,
timing with perf_counter."""

import time
from dataclasses import dataclass

import torch

FORMATS = ("fp32", "fp16", "bf16", "fp8-e4m3", "int8", "int4-g64")


@dataclass
class FormatResult:
    format: str
    bytes: int
    output_rel_err: float
    matmul_s: float


def _int_quant(W, bits, group):
    qmax = 2 ** (bits - 1) - 1
    g = W.reshape(W.shape[0], -1, group) if group else W.unsqueeze(1)
    scale = (g.abs().amax(-1, keepdim=True) / qmax).clamp_min(1e-12).half().float()
    q = (g / scale).round().clamp(-qmax - 1, qmax)
    return (q * scale).reshape(W.shape), W.numel() * bits // 8 + scale.numel() * 2


def _weights(fmt, W):
    if fmt == "fp32":
        return W, W.numel() * 4, torch.float32
    if fmt in ("fp16", "bf16"):
        dt = torch.float16 if fmt == "fp16" else torch.bfloat16
        return W.to(dt), W.numel() * 2, dt
    if fmt == "fp8-e4m3":
        return W.to(torch.float8_e4m3fn).float(), W.numel(), torch.float32
    return (*_int_quant(W, 8, None), torch.float32) if fmt == "int8" else (*_int_quant(W, 4, 64), torch.float32)


def compare_formats(W, X, repeats=3):
    ref = X @ W.T
    rows = []
    for fmt in FORMATS:
        w, nbytes, dt = _weights(fmt, W)
        y = (X.to(dt) @ w.T).float()
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            X.to(dt) @ w.T
            times.append(time.perf_counter() - t0)
        rows.append(FormatResult(fmt, nbytes, float(torch.linalg.norm(y - ref) / torch.linalg.norm(ref)),
                                 sorted(times[1:])[len(times[1:]) // 2]))
    return rows
