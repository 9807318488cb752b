"""The chapter's benchmark (book 6.6.2-6.6.3): every method on the same model, same text, same prompts.

``python -m ch06_quantization.compare [--smoke]`` prints one row per method -- fp32, bf16, int8
per-channel RTN, int4 g64 RTN / GPTQ / AWQ, int3 g64 RTN / GPTQ, bitsandbytes NF4, torchao int8 (plus
int4 g32 RTN, the grid the embedded model was quantized on upstream) -- with perplexity on held-out text,
its change against fp32, greedy agreement with fp32, weight bytes and batch-1 decode tokens/s; writes a
plot; and ends with one JSON line.

Group size is 64, not the usual 128: 128 does not divide this model's hidden size (576 = 9 x 64). The
embedded model's weights were Q4_1-quantized upstream (groups of 32, asymmetric), so int4 g32 RTN is
almost free on it; differences between methods show at g64, per-channel and 3 bits.

Decode tokens/s is measured on ``cpu_decode.fast_decoder(model)``: fp32 and every int8 / int4 (g32, g64)
method decode through the fused C++ step, their linears on ``cpu_qgemv``'s packed GEMV (int16 activations
per block of 32, so greedy tokens stay ``QuantLinear``'s; the prefill, perplexity and agreement still use
``QuantLinear``'s dequantized weights, so those numbers do not move); bf16, int3 and the libraries decode
eagerly (column ``decode``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ch06_quantization.awq import AWQConfig, awq_quantize_model
from ch06_quantization.calibration import calibration_ids
from ch06_quantization.cpu_decode import FusedDecoder, fast_decoder
from ch06_quantization.evaluate import EvalData, evaluate, load_model, prepare_eval, weight_bytes
from ch06_quantization.gptq import GPTQConfig, gptq_quantize_model
from ch06_quantization.libraries import LIBRARY_METHODS, LibraryMissing
from ch06_quantization.rtn import QuantSpec, quantize_model_rtn
from common.bench import stamp_dict
from common.cli import add_common_args, friendly_errors, make_parser, positive_int, seed_everything
from common.loader import load_tokenizer
from common.paths import reports_dir
from common.report import emit_json, print_table, save_plot

G = 64  # group size that divides 576


@dataclass(frozen=True, slots=True)
class CompareConfig:
    eval_tokens: int = 4096
    seq_len: int = 512
    answer_tokens: int = 24
    decode_tokens: int = 16
    calib_samples: int = 16
    calib_len: int = 256
    awq_grid: int = 20
    n_prompts: int | None = None
    keep_layers: int | None = None  # smoke: truncate the model to its first layers (plumbing only)

    @classmethod
    def smoke(cls) -> CompareConfig:
        return cls(eval_tokens=128, seq_len=128, answer_tokens=4, decode_tokens=2, calib_samples=2,
                   calib_len=32, awq_grid=2, n_prompts=1, keep_layers=2)


Builder = Callable[[nn.Module, torch.Tensor, CompareConfig], nn.Module]


def _rtn(spec: QuantSpec) -> Builder:
    return lambda m, _ids, _cfg: quantize_model_rtn(m, spec)


def _gptq(spec: QuantSpec) -> Builder:
    def build(m: nn.Module, ids: torch.Tensor, _cfg: CompareConfig) -> nn.Module:
        gptq_quantize_model(m, ids, GPTQConfig(spec, act_order=True))
        return m

    return build


def _awq(spec: QuantSpec) -> Builder:
    def build(m: nn.Module, ids: torch.Tensor, cfg: CompareConfig) -> nn.Module:
        awq_quantize_model(m, ids, AWQConfig(spec, n_grid=cfg.awq_grid, search_samples=min(4, len(ids))))
        return m

    return build


def _library(name: str) -> Builder:
    return lambda m, _ids, _cfg: LIBRARY_METHODS[name][0](m)


METHODS: dict[str, Builder | None] = {
    "fp32": None,
    "bf16": None,  # loaded in bf16 (weights and activations)
    "int8 per-channel RTN": _rtn(QuantSpec(8, "channel", symmetric=True)),
    "int4 g32 RTN (upstream grid)": _rtn(QuantSpec(4, "group", 32)),
    "int4 g64 RTN": _rtn(QuantSpec(4, "group", G)),
    "int4 g64 GPTQ": _gptq(QuantSpec(4, "group", G)),
    "int4 g64 AWQ": _awq(QuantSpec(4, "group", G)),
    "int3 g64 RTN": _rtn(QuantSpec(3, "group", G)),
    "int3 g64 GPTQ": _gptq(QuantSpec(3, "group", G)),
    "bnb nf4": _library("bnb nf4"),
    "torchao int8": _library("torchao int8"),
}


def truncate(model: nn.Module, keep_layers: int | None) -> nn.Module:
    """Keep only the first ``keep_layers`` decoder blocks (``--smoke``: checks the plumbing in seconds;
    the perplexities of a truncated model mean nothing)."""
    if keep_layers is not None:
        model.layers = model.layers[:keep_layers]
    return model


def run_method(name: str, base: nn.Module, ids: torch.Tensor, data: EvalData, cfg: CompareConfig,
               spec: str) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    if name == "fp32":
        model = base
    elif name == "bf16":
        model = truncate(load_model(spec, dtype=torch.bfloat16), cfg.keep_layers)
    else:
        model = METHODS[name](copy.deepcopy(base), ids, cfg)
    quant_s = time.perf_counter() - t0 if name not in ("fp32", "bf16") else 0.0
    quant_cpu_s = time.process_time() - c0 if quant_s else 0.0  # CPU seconds: robust to a shared machine
    decoder = fast_decoder(model)  # int8/int4 linears -> cpu_qgemv's packed GEMV (same prefill numbers)
    res = evaluate(model, data, cfg.decode_tokens, decoder=decoder)
    return {"method": name, **res.as_dict(), "linear_bytes": weight_bytes(model, linears_only=True),
            "quant_s": quant_s, "quant_cpu_s": quant_cpu_s,
            "decode": "fused C++" if isinstance(decoder, FusedDecoder) else "eager"}


def goals(rows: dict[str, dict]) -> dict[str, object]:
    """The issue's acceptance goals, evaluated on this run's numbers (None where a row is missing)."""
    def ppl(n: str) -> float | None:
        return rows[n]["ppl"] if n in rows and "ppl" in rows[n] else None

    def lt(a: str, b: str) -> bool | None:
        return None if ppl(a) is None or ppl(b) is None else ppl(a) < ppl(b)

    fp16_linear = rows["fp32"]["linear_bytes"] / 2
    int4 = rows.get("int4 g64 GPTQ", {}).get("linear_bytes")
    gq = rows.get("int4 g64 GPTQ", {}).get("quant_s")
    return {
        "int8_ppl_delta_le_1pct": None if ppl("int8 per-channel RTN") is None
        else abs(rows["int8 per-channel RTN"]["ppl_delta_pct"]) <= 1.0,
        "gptq_beats_rtn_int4_g64": lt("int4 g64 GPTQ", "int4 g64 RTN"),
        "gptq_beats_rtn_int3_g64": lt("int3 g64 GPTQ", "int3 g64 RTN"),
        "awq_beats_rtn_int4_g64": lt("int4 g64 AWQ", "int4 g64 RTN"),
        "int4_linear_bytes_pct_of_fp16": None if int4 is None else 100 * int4 / fp16_linear,
        "int4_linear_bytes_le_30pct_fp16": None if int4 is None else int4 <= 0.30 * fp16_linear,
        "gptq_int4_seconds": gq,
        "gptq_int4_cpu_seconds": rows.get("int4 g64 GPTQ", {}).get("quant_cpu_s"),
        "gptq_within_5_min": None if gq is None else gq <= 300,
    }


def plot(rows: dict[str, dict], folder) -> str:
    ok = {n: r for n, r in rows.items() if "ppl" in r}
    series = {n: ([r["weight_bytes"] / 1e6], [r["ppl"]]) for n, r in ok.items()}
    path = save_plot(folder / "ch06_compare.png", series, title="Perplexity vs weight memory (held-out text)",
                     xlabel="weight MB (all tensors as held in memory)", ylabel="perplexity",
                     hlines={"fp32": rows["fp32"]["ppl"]})
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch06_quantization.compare", __doc__)
    add_common_args(parser)
    parser.add_argument("--eval-tokens", type=positive_int, default=CompareConfig().eval_tokens,
                        help="held-out tokens for perplexity")
    parser.add_argument("--calib-samples", type=positive_int, default=CompareConfig().calib_samples)
    parser.add_argument("--calib-len", type=positive_int, default=CompareConfig().calib_len)
    parser.add_argument("--methods", default="all", help="comma-separated subset of: " + ", ".join(METHODS))
    args = parser.parse_args(argv)
    with friendly_errors():
        from common.cli import UsageError

        names = list(METHODS) if args.methods == "all" else [m.strip() for m in args.methods.split(",")]
        bad = [n for n in names if n not in METHODS]
        if bad:
            raise UsageError(f"unknown method(s) {bad}; choose from: {', '.join(METHODS)}")
        if "fp32" not in names:
            names.insert(0, "fp32")
        seed_everything(args.seed)
        cfg = CompareConfig.smoke() if args.smoke else CompareConfig(
            eval_tokens=args.eval_tokens, calib_samples=args.calib_samples, calib_len=args.calib_len)
        base = truncate(load_model(args.model), cfg.keep_layers)
        if cfg.keep_layers and not args.json:
            print(f"smoke: model truncated to {cfg.keep_layers} layers; numbers check plumbing only")
        tok = load_tokenizer(args.model)
        data = prepare_eval(base, tok, cfg.eval_tokens, cfg.seq_len, cfg.answer_tokens, cfg.n_prompts)
        ids = calibration_ids(tok, cfg.calib_samples, cfg.calib_len, seed=args.seed)
        rows: dict[str, dict] = {}
        for name in names:
            try:
                rows[name] = run_method(name, base, ids, data, cfg, args.model)
            except LibraryMissing as exc:
                rows[name] = {"method": name, "status": str(exc)}
            if not args.json:
                r = rows[name]
                print(f"  {name}: " + (f"ppl {r['ppl']:.4f}, {r['quant_s']:.1f} s to quantize" if "ppl" in r
                                       else r["status"]), flush=True)
        ref = rows["fp32"]["ppl"]
        for r in rows.values():
            if "ppl" in r:
                r["ppl_delta_pct"] = 100 * (r["ppl"] / ref - 1)
        g = goals(rows)
        png = plot(rows, reports_dir("ch06"))
        if not args.json:
            print_table(list(rows.values()), headers=["method", "ppl", "ppl_delta_pct", "agreement", "weight_bytes",
                                                      "linear_bytes", "tok_s", "decode", "quant_s",
                                                      "quant_cpu_s"],
                        title=f"ch06 methods on {args.model}: ppl over {data.ppl_tokens} held-out tokens, "
                              f"calibration {cfg.calib_samples}x{cfg.calib_len} ShareGPT tokens",
                        floatfmt=".4g")
            print("goals:", g)
            print("plot:", png)
        keys = ("ppl", "ppl_delta_pct", "agreement", "weight_bytes", "linear_bytes", "tok_s", "decode", "quant_s",
                "quant_cpu_s", "status")
        emit_json({"benchmark": "ch06.compare", "model": args.model, "smoke": args.smoke,
                   "eval_tokens": data.ppl_tokens, "calib_tokens": cfg.calib_samples * cfg.calib_len,
                   "methods": {n: {k: r[k] for k in keys if k in r} for n, r in rows.items()},
                   "goals": g, "plot": png, "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
