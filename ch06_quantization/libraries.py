"""Quantization libraries on the same model (book 6.4.3, 6.4.4): bitsandbytes (NF4, LLM.int8()),
torchao (int8 weight-only) and optimum-quanto (int8/int4 weights), each behind a ``HAS_X`` check.

Every wrapper rewrites the decoder linears of ch04's ``LlamaModel`` in place (embeddings and the tied LM
head stay fp32, as for our own methods), so the numbers compare like for like. A missing library makes
its row say so instead of failing (install them with ``pip install -e '.[quant]'``).

GPU notes (not measurable here): bitsandbytes' fast kernels and LLM.int8()'s outlier decomposition are
CUDA code; on CPU 0.50 runs 4-bit and 8-bit through its CPU backend. torchao's int8 path on GPU goes
through ``torch.compile`` + Triton; quanto has Marlin kernels for int4 on Ampere+.

Run ``python -m ch06_quantization.libraries [--smoke]`` for a comparison table.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable

from torch import nn

from ch06_quantization.rtn import decoder_linears, set_module

HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None
HAS_TORCHAO = importlib.util.find_spec("torchao") is not None
HAS_QUANTO = importlib.util.find_spec("optimum") is not None and importlib.util.find_spec("optimum.quanto") is not None
INSTALL_HINT = "pip install -e '.[quant]'"


class LibraryMissing(RuntimeError):
    """The library for a method is not installed; the message says how to get it."""


def _require(flag: bool, name: str) -> None:
    if not flag:
        raise LibraryMissing(f"{name} is not installed; run {INSTALL_HINT} to compare it.")


def bnb_nf4(model: nn.Module) -> nn.Module:
    """bitsandbytes NF4 (4-bit NormalFloat, blocks of 64, fp32 absmax) on every decoder linear."""
    _require(HAS_BNB, "bitsandbytes")
    os.environ.setdefault("BITSANDBYTES_NOWELCOME", "1")
    import bitsandbytes as bnb

    for name, lin in decoder_linears(model).items():
        new = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                quant_type="nf4", compute_dtype=lin.weight.dtype, device="meta")
        new.weight = bnb.nn.Params4bit(lin.weight.data.clone(), requires_grad=False, quant_type="nf4")
        if lin.bias is not None:
            new.bias = nn.Parameter(lin.bias.data.clone(), requires_grad=False)
        set_module(model, name, new.to("cpu"))  # .to() performs the quantization
    return model


def bnb_int8(model: nn.Module) -> nn.Module:
    """bitsandbytes LLM.int8() (per-row absmax int8 weights) on every decoder linear."""
    _require(HAS_BNB, "bitsandbytes")
    import bitsandbytes as bnb

    for name, lin in decoder_linears(model).items():
        new = bnb.nn.Linear8bitLt(lin.in_features, lin.out_features, bias=lin.bias is not None,
                                  has_fp16_weights=False, device="meta")
        new.weight = bnb.nn.Int8Params(lin.weight.data.clone(), requires_grad=False, has_fp16_weights=False)
        if lin.bias is not None:
            new.bias = nn.Parameter(lin.bias.data.clone(), requires_grad=False)
        set_module(model, name, new.to("cpu"))
    return model


def torchao_int8(model: nn.Module) -> nn.Module:
    """torchao int8 weight-only (per-channel symmetric) on every decoder linear."""
    _require(HAS_TORCHAO, "torchao")
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    quantize_(model, Int8WeightOnlyConfig(), filter_fn=lambda m, fqn: isinstance(m, nn.Linear) and "layers." in fqn)
    return model


def _quanto(model: nn.Module, bits: int) -> nn.Module:
    _require(HAS_QUANTO, "optimum-quanto")
    from optimum.quanto import freeze, qint4, qint8, quantize

    quantize(model, weights=qint4 if bits == 4 else qint8, include=["layers.*"])
    freeze(model)
    return model


def quanto_int8(model: nn.Module) -> nn.Module:
    return _quanto(model, 8)


def quanto_int4(model: nn.Module) -> nn.Module:
    return _quanto(model, 4)


LIBRARY_METHODS: dict[str, tuple[Callable[[nn.Module], nn.Module], bool]] = {
    "bnb nf4": (bnb_nf4, HAS_BNB),
    "bnb int8": (bnb_int8, HAS_BNB),
    "torchao int8": (torchao_int8, HAS_TORCHAO),
    "quanto int8": (quanto_int8, HAS_QUANTO),
    "quanto int4": (quanto_int4, HAS_QUANTO),
}


def main(argv: list[str] | None = None) -> int:
    import copy

    from ch06_quantization.evaluate import evaluate, load_model, prepare_eval
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.loader import load_tokenizer
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch06_quantization.libraries", __doc__)
    add_common_args(parser)
    parser.add_argument("--eval-tokens", type=int, default=4096)
    args = parser.parse_args(argv)
    with friendly_errors():
        from ch06_quantization.compare import truncate

        base = truncate(load_model(args.model), 2 if args.smoke else None)  # smoke: plumbing only
        tok = load_tokenizer(args.model)
        n_tok, seq, ans, dec = (128, 128, 4, 2) if args.smoke else (args.eval_tokens, 512, 24, 16)
        data = prepare_eval(base, tok, n_tok, seq, ans, n_prompts=1 if args.smoke else None)
        rows, out = [], {}
        ref = evaluate(base, data, dec)
        rows.append({"method": "fp32", **ref.as_dict(), "quant_s": 0.0, "status": "ok"})
        for name, (fn, available) in LIBRARY_METHODS.items():
            if not available:
                rows.append({"method": name, "status": f"not installed ({INSTALL_HINT})"})
                continue
            t0 = time.perf_counter()
            model = fn(copy.deepcopy(base))
            qs = time.perf_counter() - t0
            res = evaluate(model, data, dec)
            rows.append({"method": name, **res.as_dict(), "quant_s": qs, "status": "ok"})
            del model
        for r in rows:
            out[r["method"]] = r
        if not args.json:
            print_table(rows, headers=["method", "ppl", "agreement", "weight_bytes", "tok_s", "quant_s", "status"],
                        title=f"libraries on {args.model}; ppl over {data.ppl_tokens} held-out tokens",
                        floatfmt=".4g")
        emit_json({"benchmark": "ch06.libraries", "methods": out, "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
