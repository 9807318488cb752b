"""Decode GEMV kernels for the CPU, fp32 and int8 weight-only (book 6.1, 6.2; used by 7.4.2 and 9.3).

Why weight-only quantization speeds decode: at batch 1 every weight is read once per token and used for
one multiply-add, so the step time is bytes / bandwidth. Reading int8 instead of fp32 is 4x fewer bytes,
but only if the kernel reads the int8 bytes and widens them in registers ("dequantize tile by tile").
``rtn.QuantLinear`` instead rebuilds the whole fp32 matrix on every call, which reads *more* bytes than
fp32 (the reason ch07 measured that draft at 2x the target's cost).

This file wraps that kernel: C++ in ``csrc/gemv.h`` (the template, shared with the fused decoder) and
``csrc/gemv.cpp`` (the operators), built on first use together with ch06's other kernels (``cpu_kernels``,
through ``common.cpp_ext``):

* ``gemv_f32(x (M, K), w (N, K)) -> (M, N)``: the fp32 baseline. Each weight row is streamed once and
  dotted with the M (few) activation rows, which stay in L1. On the 2-core EPYC of this repository
  (fp32, 2 threads) it reads the model's 538 MB of linears at ~12-15 GB/s for one row where
  ``F.linear`` (MKL sgemv) reaches ~8-10 GB/s, and at 2-9 rows it takes 0.45-0.7x ``F.linear``'s time
  (``python -m ch06_quantization.cpu_gemv`` measures it). ``cpu_decode`` goes further with a weight
  layout made for one sequential stream per thread.
* ``gemv_u8(x, q (N, K) uint8, s (N,), z (N,)) -> (M, N)``: per-channel int8 with a zero point, as
  ``rtn`` stores it: ``y = s * (x . q - z * sum(x))``; the bytes are widened to fp32 in AVX2 registers.

:class:`GemvLinear` wraps either; :func:`use_gemv` swaps every ``nn.Linear`` of a model for one. Inputs
with more than ``max_rows`` rows (a prefill) take the plain path (``F.linear`` on the fp32 or the
dequantized weight), so only decode-shaped calls use the kernel. Tests hold both kernels to
``F.linear`` on the same (dequantized) weights.

    python -m ch06_quantization.cpu_gemv            # the model's linears: F.linear vs gemv fp32 vs gemv int8
    python -m ch06_quantization.cpu_gemv --smoke
"""

from __future__ import annotations

import functools
import time

import torch
import torch.nn.functional as F
from torch import nn

from common import cpp_ext


def _module():
    from ch06_quantization.cpu_kernels import module

    return module()


@functools.lru_cache(maxsize=1)
def _compilable():
    """The two kernels as ``torch.library`` custom ops, so ``torch.compile`` keeps them in its graph.

    Eager calls go straight to the pybind functions instead: the custom-op wrapper costs ~10 us of
    Python per call, and a decode step makes 211 of them.
    """
    lib = _module()

    @torch.library.custom_op("llmic::gemv_f32", mutates_args=())
    def gemv_f32(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return lib.gemv_f32(x, w)

    @gemv_f32.register_fake
    def _(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x.new_empty((*x.shape[:-1], w.shape[0]))

    @torch.library.custom_op("llmic::gemv_u8", mutates_args=())
    def gemv_u8(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
        return lib.gemv_u8(x, q, scale, zero)

    @gemv_u8.register_fake
    def _(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
        return x.new_empty((*x.shape[:-1], q.shape[0]))

    return gemv_f32, gemv_u8


def gemv_problem() -> str | None:
    """None when the kernel can be built here, else one sentence saying what is missing."""
    return cpp_ext.cpp_toolchain_problem()


class GemvLinear(nn.Module):
    """``nn.Linear`` for decode on a CPU: the C++ GEMV for up to ``max_rows`` rows, ``F.linear`` beyond.

    ``bits=32`` keeps the fp32 weight (shared with the source layer, no copy); ``bits=8`` stores it as
    per-output-channel asymmetric int8 (``rtn.quantize_rtn``'s representation: uint8 ``q``, fp16-rounded
    scale, integer zero point), so the kernel reads a quarter of the bytes.
    """

    def __init__(self, linear: nn.Linear, bits: int = 32, max_rows: int = 16) -> None:
        super().__init__()
        if bits not in (8, 32):
            raise ValueError(f"GemvLinear is fp32 (bits=32) or int8 (bits=8), not {bits} bits")
        self.in_features, self.out_features, self.bits, self.max_rows = (
            linear.in_features, linear.out_features, bits, max_rows)
        self.bias = None if linear.bias is None else linear.bias.detach()
        w = linear.weight.detach()
        if bits == 32:
            self.weight = w.float().contiguous()
        else:
            from ch06_quantization.rtn import QuantSpec, quantize_rtn

            qw = quantize_rtn(w, QuantSpec(8, "channel"))
            self.register_buffer("q", qw.q.contiguous())  # (N, K) uint8
            self.register_buffer("scale", qw.scales.reshape(-1).float())  # (N,)
            self.register_buffer("zero", qw.zeros.reshape(-1).float())  # (N,)

    def dequantized_weight(self) -> torch.Tensor:
        """The (N, K) fp32 weight the kernel computes with (the reference for tests and long inputs)."""
        if self.bits == 32:
            return self.weight
        return (self.q.float() - self.zero[:, None]) * self.scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() // self.in_features > self.max_rows or x.dtype != torch.float32 or x.device.type != "cpu":
            return F.linear(x, self.dequantized_weight(), self.bias)
        if torch.compiler.is_compiling():  # registered by use_gemv before any compile
            f32, u8 = torch.ops.llmic.gemv_f32, torch.ops.llmic.gemv_u8
        else:
            f32, u8 = _module().gemv_f32, _module().gemv_u8
        y = f32(x, self.weight) if self.bits == 32 else u8(x, self.q, self.scale, self.zero)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.bits}-bit C++ GEMV"


def use_gemv(model: nn.Module, bits: int = 32, max_rows: int = 16) -> int:
    """Replace every ``nn.Linear`` of ``model`` by a :class:`GemvLinear`, in place; return how many.

    Raises ValueError when the model is not fp32 on the CPU or no C++ toolchain is here.
    """
    first = next(model.parameters())
    if first.dtype != torch.float32 or first.device.type != "cpu":
        raise ValueError(f"the C++ GEMV runs fp32 models on the CPU, not {first.dtype} on {first.device}")
    problem = gemv_problem()
    if problem:
        raise ValueError(f"cannot build the C++ GEMV: {problem}")
    _compilable()  # build (or load) the kernel once and register it for torch.compile
    swaps = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, nn.Linear)]
    for parent, name, child in swaps:
        setattr(parent, name, GemvLinear(child, bits, max_rows))
    return len(swaps)


def time_linears(weights: list[nn.Module], rows: int, repeats: int = 5) -> float:
    """Best seconds to push ``rows`` rows through every layer in ``weights`` once (a decode step's GEMMs)."""
    inputs = {m.in_features: torch.randn(rows, m.in_features) for m in weights}
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first pass warms up
            t0 = time.perf_counter()
            for m in weights:
                m(inputs[m.in_features])
            best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.model import LlamaModel
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch06_quantization.cpu_gemv", __doc__)
    add_common_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        model = LlamaModel.from_pretrained(args.model, load_format=args.load_format).float().eval()
        plain = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if args.smoke:
            plain = plain[:14]  # two blocks
        f32 = [GemvLinear(m, 32) for m in plain]
        i8 = [GemvLinear(m, 8) for m in plain]
        _module()
        fp32_bytes = sum(m.weight.numel() * 4 for m in plain)
        rows, out = [], {}
        for m_rows in (1, 5) if args.smoke else (1, 2, 5, 9, 16):
            t = {name: time_linears(layers, m_rows, 2 if args.smoke else 5)
                 for name, layers in (("F.linear", plain), ("gemv fp32", f32), ("gemv int8", i8))}
            rows.append({"rows": m_rows, **{f"{k} ms": 1e3 * v for k, v in t.items()},
                         "fp32 GB/s (gemv)": fp32_bytes / t["gemv fp32"] / 1e9,
                         "gemv fp32 vs F.linear": t["F.linear"] / t["gemv fp32"],
                         "int8 vs fp32 gemv": t["gemv fp32"] / t["gemv int8"]})
            out[f"rows_{m_rows}"] = rows[-1]
        if not args.json:
            print_table(rows, title=f"{len(plain)} linears ({fp32_bytes / 1e6:.0f} MB fp32), one pass each, "
                                    f"{torch.get_num_threads()} threads")
        emit_json({"linears": len(plain), "fp32_mb": fp32_bytes / 1e6, **out,
                   "gemv_vs_linear_1_row": rows[0]["gemv fp32 vs F.linear"],
                   "int8_vs_fp32_1_row": rows[0]["int8 vs fp32 gemv"],
                   "hardware": stamp_dict(dtype="fp32", torch_threads=torch.get_num_threads())})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
