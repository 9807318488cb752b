"""Advanced topics (book 6.7): mixed precision by measured sensitivity, dynamic vs static W8A8, and
quantization-aware scheduling.

1. Sensitivity: quantize one decoder block at a time (int3 g64 RTN) and measure the relative error of
   that block's output on calibration data. Mixed precision gives the most sensitive quarter of the
   blocks 4 bits and the rest 3 bits; the control gives 4 bits to the *least* sensitive quarter (same
   bytes). Perplexity decides.
2. W8A8: int8 weights (per-channel) and int8 activations, either *dynamic* (a scale per token computed
   at run time) or *static* (one per-tensor scale per linear fixed from calibration absmax). Activation
   outliers make the static scale coarse for every other token.
3. Scheduling: smaller weights leave more memory for KV blocks, so the engine can hold more sequences.
   Computed with ch02's calculator for Llama-3-8B on a 24 GB and an 80 GB card (labelled as computed:
   there is no GPU here); ``qa_scheduling.py`` measures the same trade on the embedded model with
   chapter 5's engine.

Run ``python -m ch06_quantization.advanced [--smoke]``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ch06_quantization.calibration import BlockRunner, block_linears, calibration_ids
from ch06_quantization.rtn import QuantLinear, QuantSpec, fake_quantize, quantize_rtn, set_module
from common.bench import stamp_dict
from common.cli import add_common_args, friendly_errors, make_parser, seed_everything
from common.loader import load_config, load_tokenizer
from common.report import emit_json, print_table

G = 64


@torch.no_grad()
def block_sensitivity(model: nn.Module, ids: torch.Tensor, spec: QuantSpec) -> list[float]:
    """Relative output error of each block when only that block is quantized (inputs from fp blocks)."""
    runner = BlockRunner(model, ids)
    errs: list[float] = []
    for i, block in enumerate(model.layers):
        q = copy.deepcopy(block)
        for lin in block_linears(q).values():
            lin.weight.data = fake_quantize(lin.weight.data, spec)
        x = runner.inputs.x
        ref, out = runner.block_forward(block, x), runner.block_forward(q, x)
        errs.append(float((out - ref).norm() / (ref - x).norm()))  # error relative to the block's update
        runner.run_block(i)
    return errs


def quantize_blocks(model: nn.Module, bits_per_block: list[int]) -> nn.Module:
    for block, bits in zip(model.layers, bits_per_block, strict=True):
        for name, lin in block_linears(block).items():
            set_module(block, name, QuantLinear(quantize_rtn(lin.weight, QuantSpec(bits, "group", G)), lin.bias))
    return model


class W8A8Linear(nn.Module):
    """Fake-quantized int8 weights (per-channel) and int8 activations (dynamic per-token or static)."""

    def __init__(self, lin: nn.Linear, mode: str, static_absmax: float | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(fake_quantize(lin.weight.data, QuantSpec(8, "channel", symmetric=True)),
                                   requires_grad=False)
        self.bias = lin.bias
        self.mode, self.static_absmax = mode, static_absmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "dynamic":
            scale = x.abs().amax(-1, keepdim=True).clamp(min=1e-8) / 127  # one scale per token
        elif self.mode == "static":
            scale = torch.tensor(self.static_absmax / 127)
        else:
            return nn.functional.linear(x, self.weight, self.bias)
        xq = torch.clamp(torch.round(x / scale), -127, 127) * scale
        return nn.functional.linear(xq, self.weight, self.bias)


@torch.no_grad()
def calibrate_absmax(model: nn.Module, ids: torch.Tensor) -> dict[str, float]:
    """Largest |activation| entering each decoder linear on calibration data (static scales)."""
    from ch06_quantization.calibration import InputCollector
    from ch06_quantization.rtn import decoder_linears

    amax: dict[str, float] = {}

    def see(name: str, x: torch.Tensor) -> None:
        amax[name] = max(amax.get(name, 0.0), float(x.abs().max()))

    with InputCollector(decoder_linears(model), see):
        model(ids)
    return amax


def w8a8(model: nn.Module, mode: str, amax: dict[str, float]) -> nn.Module:
    from ch06_quantization.rtn import decoder_linears

    for name, lin in decoder_linears(model).items():
        set_module(model, name, W8A8Linear(lin, mode, amax.get(name)))
    return model


@dataclass
class SchedulingRow:
    gpu_gb: int
    weights: str
    weight_gb: float
    kv_gb: float
    max_seqs_at_4k: int


def scheduling_rows(spec: str = "llama-3-8b", gpus: tuple[int, ...] = (24, 80), ctx: int = 4096,
                    utilization: float = 0.9) -> list[SchedulingRow]:
    """Sequences of ``ctx`` tokens whose fp16 KV fits beside the weights (computed, ch02's formulas)."""
    from ch02_gpu.memory import Arch, count_params, kv_bytes_per_token, weights_bytes

    arch = Arch.from_config(load_config(spec), name=spec)
    params = count_params(arch)
    kv_tok = kv_bytes_per_token(arch, "fp16")
    rows = []
    for gb in gpus:
        for fmt, gs in (("fp16", 128), ("int8", 128), ("int4", 128)):
            w = weights_bytes(params, fmt, group_size=gs, zero_point=fmt == "int4")
            kv = max(0.0, gb * 1e9 * utilization - w)
            rows.append(SchedulingRow(gb, fmt, w / 1e9, kv / 1e9, int(kv // (kv_tok * ctx))))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch06_quantization.advanced", __doc__)
    add_common_args(parser)
    parser.add_argument("--eval-tokens", type=int, default=1024)
    args = parser.parse_args(argv)
    with friendly_errors():
        from ch06_quantization.compare import truncate
        from ch06_quantization.evaluate import eval_windows, load_model, perplexity

        seed_everything(args.seed)
        keep = 4 if args.smoke else None
        base = truncate(load_model(args.model), keep)
        tok = load_tokenizer(args.model)
        windows = eval_windows(tok, 128 if args.smoke else args.eval_tokens, 128 if args.smoke else 512)
        ids = calibration_ids(tok, 2 if args.smoke else 8, 64 if args.smoke else 256, seed=args.seed)
        sens = block_sensitivity(base, ids, QuantSpec(3, "group", G))
        n = len(sens)
        k = max(1, n // 4)
        order = sorted(range(n), key=lambda i: -sens[i])
        plans = {"all int3 g64": [3] * n,
                 "int4 on the most sensitive 25%": [4 if i in order[:k] else 3 for i in range(n)],
                 "int4 on the least sensitive 25% (control)": [4 if i in order[-k:] else 3 for i in range(n)]}
        ppl_fp = perplexity(base, windows)
        rows = [{"config": "fp32", "ppl": ppl_fp}]
        for name, bits in plans.items():
            rows.append({"config": name, "ppl": perplexity(quantize_blocks(copy.deepcopy(base), bits), windows)})
        amax = calibrate_absmax(base, ids)
        for mode in ("weight-only", "dynamic", "static"):
            rows.append({"config": f"W8A8 {mode}" if mode != "weight-only" else "W8 (activations fp32)",
                         "ppl": perplexity(w8a8(copy.deepcopy(base), mode, amax), windows)})
        for r in rows:
            r["ppl_delta_pct"] = 100 * (r["ppl"] / ppl_fp - 1)
        sched = [vars(r) for r in scheduling_rows()]
        if not args.json:
            print("block sensitivity (int3 g64, relative output error):",
                  " ".join(f"{i}:{e:.3f}" for i, e in enumerate(sens)))
            print_table(rows, title=f"ppl over {windows.shape[0] * (windows.shape[1] - 1)} held-out tokens"
                                    + (f" (smoke: {keep} layers)" if keep else ""), floatfmt=".4g")
            print_table(sched, title="COMPUTED (not measured): Llama-3-8B, fp16 KV, 90% of the card, "
                                     "4k-token sequences that fit", floatfmt=".3g")
        emit_json({"benchmark": "ch06.advanced", "sensitivity": sens, "rows": rows, "scheduling_computed": sched,
                   "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
