"""Exercise 6.1 (book 6.1/6.3): compare number formats for speed and accuracy on one real weight.

Task: implement :func:`compare_formats`. For each format in :data:`FORMATS` store ``W`` in it (use
``ch06_quantization.formats.round_trip`` or ``ch06_quantization.rtn``), compute ``Y = X W^T`` the way a
kernel would on this machine (fp16/bf16: cast and multiply; fp8/int8/int4: dequantize, then multiply),
and return one :class:`FormatResult` per format, in order: storage bytes (scales included), the output
error ``||Y - Y_fp32|| / ||Y_fp32||`` and the median time of one matmul (``common.bench.time_fn``).
Grade with ``python -m common.grade 6.1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FORMATS = ("fp32", "fp16", "bf16", "fp8-e4m3", "int8", "int4-g64")


@dataclass
class FormatResult:
    format: str
    bytes: int
    output_rel_err: float
    matmul_s: float


def compare_formats(W: torch.Tensor, X: torch.Tensor, repeats: int = 3) -> list[FormatResult]:
    raise NotImplementedError("exercise 6.1: compare the formats (see the module docstring)")
