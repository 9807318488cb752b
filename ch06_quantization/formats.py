"""Number formats for weights (book 6.1 and 6.3): bytes per parameter, representable range, and the
measured round-trip error of each format on the embedded model's real weights.

Formats: fp32, fp16, bf16, fp8 (E4M3 and E5M2, with one per-tensor scale, emulated on CPU by casting to
``torch.float8_*`` and back), int8 (per-channel symmetric) and int4 (group 64 asymmetric). The error is
``||W - W_hat||_F / ||W||_F`` over every decoder linear weight, read straight from the safetensors file.
The memory table then sizes the embedded model and, with ch02's calculator, Llama-3-8B/70B.

Note: the embedded model was Q4_1-quantized upstream (llama.cpp: blocks of 32, fp16 scale ``d`` and fp16
minimum ``m``, ``w = d * q + m``). The ``int4-q4_1`` row re-applies exactly that grid and measures ~0
error; the integer-zero-point grid that GPTQ/AWQ checkpoints use (``int4-g64``, and g32 too) cannot
represent a float minimum, so it does *not* get this free ride -- measured in the tests.

Run: ``python -m ch06_quantization.formats [--smoke]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ch06_quantization.rtn import QuantSpec, fake_quantize
from common.bench import stamp_dict
from common.cli import add_common_args, friendly_errors, make_parser
from common.loader import load_config, resolve_model_path
from common.report import emit_json, print_table

FP8_MAX = {"e4m3": 448.0, "e5m2": 57344.0}


@dataclass(frozen=True, slots=True)
class FormatInfo:
    name: str
    bits_per_param: float  # storage incl. scales (int formats: fp16 scale (+ zero) per group)
    max_value: float  # largest finite magnitude (before scaling)
    min_normal: float  # smallest positive normal (float) or step (int, relative to the scale)
    note: str


def format_table() -> list[FormatInfo]:
    """The formats with their storage cost and range (read from torch.finfo where it exists)."""
    def fi(dt: torch.dtype) -> tuple[float, float]:
        f = torch.finfo(dt)
        return float(f.max), float(f.tiny)

    return [
        FormatInfo("fp32", 32, *fi(torch.float32), "reference; 8 exponent, 23 mantissa bits"),
        FormatInfo("fp16", 16, *fi(torch.float16), "5 exp / 10 mantissa: precise, narrow range"),
        FormatInfo("bf16", 16, *fi(torch.bfloat16), "8 exp / 7 mantissa: fp32's range, less precision"),
        FormatInfo("fp8-e4m3", 8, *fi(torch.float8_e4m3fn), "per-tensor scale; inference weights/acts"),
        FormatInfo("fp8-e5m2", 8, *fi(torch.float8_e5m2), "per-tensor scale; wider range (gradients)"),
        FormatInfo("int8", 8 + 16 / 576, 127.0, 1.0, "per-channel symmetric, fp16 scale per row"),
        FormatInfo("int4-g64", 4 + 24 / 64, 15.0, 1.0, "asymmetric, fp16 scale + 8-bit zero per 64"),
        FormatInfo("int4-q4_1", 4 + 32 / 32, 15.0, 1.0, "llama.cpp Q4_1: fp16 scale + fp16 min per 32"),
    ]


def load_weights(spec: str | None, names: Sequence[str] | None = None,
                 pattern: str = ".layers.") -> dict[str, torch.Tensor]:
    """2-D weights from a model folder's safetensors files, without building a model.

    ``names`` picks exact tensors; otherwise every 2-D tensor whose name contains ``pattern``.
    """
    from safetensors import safe_open

    folder = Path(resolve_model_path(spec))
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no safetensors files in {folder}")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(f), "pt") as st:
            for k in st.keys():  # noqa: SIM118 - safe_open is not a dict
                if (names is not None and k in names) or (names is None and pattern in k
                                                          and len(st.get_slice(k).get_shape()) == 2):
                    out[k] = st.get_tensor(k).float()
    if names is not None and set(names) - set(out):
        raise KeyError(f"tensors not found in {folder}: {sorted(set(names) - set(out))}")
    return out


def fp8_round_trip(w: torch.Tensor, kind: str) -> torch.Tensor:
    """Scale so absmax maps to the format's max, cast to fp8 and back (emulated on any device)."""
    dt = torch.float8_e4m3fn if kind == "e4m3" else torch.float8_e5m2
    scale = w.abs().max().clamp(min=1e-12) / FP8_MAX[kind]
    return (w / scale).to(dt).to(torch.float32) * scale


def q4_1_round_trip(w: torch.Tensor, block: int = 32) -> torch.Tensor:
    """llama.cpp's Q4_1: per block of 32, ``d = (max - min) / 15`` and ``m = min`` (both fp16)."""
    wb = w.reshape(-1, block)
    m = wb.amin(1, keepdim=True).half().float()
    d = ((wb.amax(1, keepdim=True) - m) / 15).half().float()
    q = torch.clamp(torch.round((wb - m) / torch.where(d > 0, d, torch.ones_like(d))), 0, 15)
    return (q * d + m).reshape(w.shape)


def round_trip(w: torch.Tensor, fmt: str) -> torch.Tensor:
    """``W_hat`` after storing ``W`` in ``fmt``."""
    if fmt == "fp32":
        return w
    if fmt in ("fp16", "bf16"):
        return w.to(torch.float16 if fmt == "fp16" else torch.bfloat16).float()
    if fmt.startswith("fp8-"):
        return fp8_round_trip(w, fmt[4:])
    if fmt == "int8":
        return fake_quantize(w, QuantSpec(8, "channel", symmetric=True))
    if fmt == "int4-g64":
        return fake_quantize(w, QuantSpec(4, "group", 64, symmetric=False))
    if fmt == "int4-q4_1":
        return q4_1_round_trip(w)
    raise ValueError(f"unknown format {fmt!r}")


def measure_errors(weights: dict[str, torch.Tensor], formats: Sequence[str]) -> dict[str, float]:
    """Relative Frobenius error of each format over all given weights (errors pooled, not averaged)."""
    out = {}
    for fmt in formats:
        err2 = ref2 = 0.0
        for w in weights.values():
            d = w - round_trip(w, fmt)
            err2 += float(d.pow(2).sum())
            ref2 += float(w.pow(2).sum())
        out[fmt] = (err2 / ref2) ** 0.5
    return out


def model_memory(spec: str) -> dict[str, float]:
    """Weight GB of ``spec`` per format via ch02's calculator (linear layers quantized, rest 16-bit)."""
    from ch02_gpu.memory import Arch, count_params, weights_bytes

    params = count_params(Arch.from_config(load_config(spec), name=spec))
    return {"params_b": params.total / 1e9,
            **{f: weights_bytes(params, f, group_size=64 if f == "int4" else 128) / 1e9
               for f in ("fp32", "fp16", "fp8", "int8", "int4")}}


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch06_quantization.formats", __doc__)
    add_common_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        weights = load_weights(args.model)
        if args.smoke:
            weights = dict(list(weights.items())[:7])  # one decoder layer
        infos = format_table()
        errs = measure_errors(weights, [i.name for i in infos])
        rows = [{"format": i.name, "bits/param": i.bits_per_param, "max": i.max_value, "min_normal": i.min_normal,
                 "rel_err": errs[i.name], "note": i.note} for i in infos]
        n_params = sum(w.numel() for w in weights.values())
        mem_rows = []
        for m in (args.model, "llama-3-8b", "llama-3-70b"):
            try:
                mem = model_memory(m)
            except ImportError:
                print("note: ch02_gpu.memory is not available; skipping the memory table")
                break
            mem_rows.append({"model": m, **mem})
        if not args.json:
            print_table(rows, title=f"Round-trip error on {len(weights)} decoder weights ({n_params / 1e6:.1f}M "
                                    f"params) of {args.model}", floatfmt=".3g")
            if mem_rows:
                print()
                print_table(mem_rows, title="Weight memory (GB; int formats: linear layers only, rest 16-bit; "
                                            "from ch02's calculator)", floatfmt=".3g")
        emit_json({"benchmark": "ch06.formats", "n_params": n_params, "rel_err": errs,
                   "memory_gb": {r["model"]: r for r in mem_rows}, "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
