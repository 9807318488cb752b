"""Prepacked weights for CPU GEMMs: the engine's cheapest speed-up on a CPU (5.3.4, 5.4).

A decode step multiplies a few rows (one per running sequence) by every weight matrix of the model, so
on a CPU the step time is the time of ~7 x layers small GEMMs. ``nn.Linear`` hands PyTorch a row-major
weight on every call; the GEMM library re-blocks it on the fly. oneDNN can instead lay each weight out
once, at load time, in the blocked format its kernels read (``torch.ops.mkldnn._reorder_linear_weight``),
and then run straight from it (``torch.ops.mkldnn._linear_pointwise``). vLLM-CPU, Intel's extension for
PyTorch and ``torch.compile``'s CPU ``freezing`` pass all do this; here it is one small module.

On the 2-core AMD EPYC VM of this repository (fp32, 2 threads) the whole model's linears for 8 rows took
~55 ms with ``F.linear`` and ~34 ms prepacked (``python -m ch05_scheduling.cpu_linear`` measures it on
the machine you run it on). Results are the same GEMM up to summation order (|diff| ~1e-4 on logits of
magnitude ~20); the tests hold the packed model to the plain one.

    python -m ch05_scheduling.cpu_linear            # plain vs packed linears of the embedded model
    python -m ch05_scheduling.cpu_linear --smoke    # 8 rows, 2 repeats
"""

from __future__ import annotations

import time

import torch
from torch import nn


def can_prepack(dtype: torch.dtype, device: torch.device | str) -> str | None:
    """None when prepacking applies, else the reason it does not (shown to the user)."""
    if torch.device(device).type != "cpu":
        return "prepacking is a CPU optimization (GPUs run cuBLAS on plain weights)"
    if not torch.backends.mkldnn.is_available():
        return "this torch build has no oneDNN (mkldnn)"
    if dtype != torch.float32:
        return f"only fp32 is prepacked here ({dtype} GEMMs on CPU need AVX-512 BF16/FP16 hardware)"
    return None


class PackedLinear(nn.Module):
    """``y = x W^T + b`` with W held in oneDNN's blocked layout. Inference only (no autograd)."""

    def __init__(self, linear: nn.Linear, batch_hint: int = 8) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with torch.no_grad():
            # the hint picks the blocking; any number of rows works with every layout
            self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), batch_hint)
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, oneDNN-packed"


def prepack_linears(model: nn.Module, batch_hint: int = 8) -> int:
    """Replace every ``nn.Linear`` inside ``model`` by a :class:`PackedLinear`, in place; return how many.

    A tied ``lm_head`` gets its own packed copy (the embedding keeps the plain table it indexes).
    Raises ValueError where :func:`can_prepack` says no.
    """
    first = next(model.parameters())
    reason = can_prepack(first.dtype, first.device)
    if reason:
        raise ValueError(f"cannot prepack: {reason}")
    swaps = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, nn.Linear)]
    for parent, name, child in swaps:
        setattr(parent, name, PackedLinear(child, batch_hint))
    return len(swaps)


def time_linears(model: nn.Module, rows: int, repeats: int = 5) -> float:
    """Mean seconds to push ``rows`` rows through every linear layer of ``model`` once."""
    linears = [m for m in model.modules() if isinstance(m, (nn.Linear, PackedLinear))]
    inputs = {m.in_features: torch.randn(rows, m.in_features) for m in linears}
    with torch.inference_mode():
        for m in linears:  # warm-up
            m(inputs[m.in_features])
        t0 = time.perf_counter()
        for _ in range(repeats):
            for m in linears:
                m(inputs[m.in_features])
    return (time.perf_counter() - t0) / repeats


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.model import LlamaModel
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch05_scheduling.cpu_linear", __doc__)
    add_common_args(parser, model=True, smoke=True)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8, 16, 32], help="rows per GEMM (batch)")
    args = parser.parse_args(argv)
    with friendly_errors():
        spec = args.model
        plain = LlamaModel.from_pretrained(spec, load_format=args.load_format)
        packed = LlamaModel.from_pretrained(spec, load_format=args.load_format)
        n = prepack_linears(packed, batch_hint=8)
        row_counts, repeats = ([8], 2) if args.smoke else (args.rows, 5)
        ids = torch.randint(0, plain.config.vocab_size, (1, 16))
        with torch.inference_mode():
            diff = (plain(ids) - packed(ids)).abs().max().item()
        rows = []
        for r in row_counts:
            t_plain, t_packed = time_linears(plain, r, repeats), time_linears(packed, r, repeats)
            rows.append({"rows": r, "F.linear ms": t_plain * 1e3, "packed ms": t_packed * 1e3,
                         "speedup": t_plain / t_packed})
        if not args.json:
            print_table(rows, title=f"all {n} linear layers of {spec}, fp32, {torch.get_num_threads()} threads")
            print(f"max |logits difference| plain vs packed: {diff:.2e}")
        emit_json({"bench": "ch05_scheduling.cpu_linear", "linears": n, "max_abs_logit_diff": diff,
                   "results": rows, "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
