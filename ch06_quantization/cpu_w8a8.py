"""W8A8 decode GEMV on the CPU: int8 weights times int8 activations, integer dot products (book 6.2, 6.5).

``cpu_gemv``'s int8 kernel reads a quarter of the bytes but widens every weight to fp32 in registers,
four instructions per eight weights, and on this 2-core AVX2 machine it gains 2.2-2.4x over fp32, not 4x.
Quantizing the activations too removes the widening (2.8x here): each activation row is rounded to int8 once per call
(symmetric, one scale per row: ``sx = absmax / 127``), and the dot products run on bytes,
32 at a time, with the instruction pair llama.cpp uses for its Q8 formats:

    _mm256_maddubs_epi16(|w|, sign(x, w))   # u8 x s8 -> pairs summed to int16 (|w|, |x| <= 127: no overflow)
    _mm256_madd_epi16(.., 1)                 # int16 pairs -> int32 accumulators

``y[m, n] = sx[m] * sw[n] * sum_k xq[m, k] * wq[n, k]`` with weights symmetric per output channel
(``rtn.QuantSpec(8, "channel", symmetric=True)``). The integer sums are exact, so the kernel equals a torch
reference that quantizes the same way (tests). The result differs from fp32 by the activation rounding:
this is a *lossy* draft for speculative decoding (ch07), where any error only costs acceptance.
The kernel is C++ in ``csrc/w8a8.cpp``, built with ch06's other kernels (``cpu_kernels``).

    python -m ch06_quantization.cpu_w8a8            # the model's linears: fp32 vs int8 GEMV vs W8A8
    python -m ch06_quantization.cpu_w8a8 --smoke
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ch06_quantization.cpu_gemv import gemv_problem, time_linears


def _module():
    from ch06_quantization.cpu_kernels import module

    return module()


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row of ``x (..., K)``: (int8 values, fp32 scale per row), the kernel's rounding."""
    amax = x.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    return torch.round(x * (1.0 / scale)).to(torch.int8), scale


class W8A8Linear(nn.Module):
    """``nn.Linear`` as int8 weights (symmetric per channel) times int8 activations (per row), in C++."""

    def __init__(self, linear: nn.Linear, max_rows: int = 16) -> None:
        super().__init__()
        from ch06_quantization.rtn import QuantSpec, quantize_rtn

        self.in_features, self.out_features, self.max_rows = linear.in_features, linear.out_features, max_rows
        self.bias = None if linear.bias is None else linear.bias.detach()
        qw = quantize_rtn(linear.weight.detach(), QuantSpec(8, "channel", symmetric=True))
        self.register_buffer("wq", (qw.q.to(torch.int16) - 128).to(torch.int8).contiguous())  # (N, K) in [-127, 127]
        self.register_buffer("sw", qw.scales.reshape(-1).float())  # (N,)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The same arithmetic in torch (exact integer sums in fp64): the kernel's test oracle."""
        xq, sx = quantize_rows(x)
        acc = xq.double() @ self.wq.double().T  # exact: |sum| < 2^53
        y = (acc * sx.double() * self.sw.double()).float()
        return y if self.bias is None else y + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() // self.in_features > self.max_rows or x.dtype != torch.float32 or x.device.type != "cpu":
            return F.linear(x, self.wq.float() * self.sw[:, None], self.bias)  # weight-only int8 (prefill)
        y = _module().gemv_w8a8(x, self.wq, self.sw)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, W8A8 C++ GEMV"


def use_w8a8(model: nn.Module, max_rows: int = 16) -> int:
    """Replace every ``nn.Linear`` of ``model`` by a :class:`W8A8Linear`, in place; return how many."""
    problem = gemv_problem()
    if problem:
        raise ValueError(f"cannot build the C++ W8A8 GEMV: {problem}")
    _module()
    swaps = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, nn.Linear)]
    for parent, name, child in swaps:
        setattr(parent, name, W8A8Linear(child, max_rows))
    return len(swaps)


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.model import LlamaModel
    from ch06_quantization.cpu_gemv import GemvLinear
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch06_quantization.cpu_w8a8", __doc__)
    add_common_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        model = LlamaModel.from_pretrained(args.model, load_format=args.load_format).float().eval()
        plain = [m for m in model.modules() if isinstance(m, nn.Linear)][: 14 if args.smoke else None]
        kinds = {"gemv fp32": [GemvLinear(m, 32) for m in plain], "gemv int8": [GemvLinear(m, 8) for m in plain],
                 "W8A8": [W8A8Linear(m) for m in plain]}
        _module()
        rows = []
        for m_rows in (1, 5):
            t = {k: time_linears(v, m_rows, 2 if args.smoke else 5) for k, v in kinds.items()}
            rows.append({"rows": m_rows, **{f"{k} ms": 1e3 * v for k, v in t.items()},
                         "W8A8 vs fp32": t["gemv fp32"] / t["W8A8"], "W8A8 vs int8": t["gemv int8"] / t["W8A8"]})
        x = torch.randn(1, plain[0].in_features)
        with torch.inference_mode():
            err = ((kinds["W8A8"][0](x) - plain[0](x)).norm() / plain[0](x).norm()).item()
        if not args.json:
            print_table(rows, title=f"{len(plain)} linears, one pass each, {torch.get_num_threads()} threads")
            print(f"relative error of W8A8 vs fp32 on the first layer, one random row: {err:.4f}")
        emit_json({"linears": len(plain), "rows_1": rows[0], "rows_5": rows[1],
                   "w8a8_vs_fp32_1_row": rows[0]["W8A8 vs fp32"], "w8a8_rel_error_first_layer": err,
                   "hardware": stamp_dict(dtype="fp32+int8", torch_threads=torch.get_num_threads())})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
