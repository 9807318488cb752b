"""Draft models built from the target itself (book 7.4.1, 7.4.2), and how to measure them (7.4.4).

* :func:`truncated_draft`: the target's first ``k`` decoder layers plus its own final norm and LM head
  (a "self-draft", early exit without training). It shares the target's weights: no extra memory.
* :func:`quantized_draft`: a copy of the target whose decoder linears are RTN-quantized with
  ``ch06_quantization.rtn`` (int8 per-channel or int4 g64). Its cost on this CPU depends on the
  dequantize-per-forward kernel of ch06, so ``c`` is measured, not assumed.
* :func:`dynamic_int8_draft`: the same with PyTorch's dynamic int8 linears (fbgemm), fast on CPU.
* :func:`gemv_int8_draft`: the same with ch06's C++ int8 GEMV (``cpu_gemv``), which reads the int8
  bytes and widens them in registers: a quarter of the target's weight traffic per decode step.
* :func:`fused_int8_draft`: that int8 draft behind ch06's ``cpu_decode.FusedDecoder``: a whole decode
  step in one C++ call, so its cost is its bytes (a quarter of the target's), not PyTorch's per-op overhead.
* :func:`fused_w8a8_draft`: the W8A8 draft below behind the same fused step (integer dot products).
* :func:`fused_int4_draft`: RTN int4 g64 (LM head too) on ch06's packed-weight kernel (``cpu_qgemv``) behind the
  same fused step: about a seventh of the target's bytes, the cheapest draft step here, and the lossiest.
* :func:`w8a8_draft`: int8 weights *and* activations (``cpu_w8a8``): integer dot products, cheaper
  again on this CPU, at the price of rounding the activations (a lossy draft is still exact here).
* :func:`step_cost`: seconds of one single-token decode step (after a prompt), the unit of ``c``.

    python -m ch07_speculative.drafts --layers 10   # cost ratio c of the self-draft vs the target
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from ch04_kvcache.kv_cache import ContiguousKVCache
from ch04_kvcache.model import LlamaModel


def truncated_draft(target: LlamaModel, num_layers: int) -> LlamaModel:
    """A model made of the target's first ``num_layers`` blocks, its final norm and its LM head (shared)."""
    total = target.config.num_layers
    if not 1 <= num_layers <= total:
        raise ValueError(f"the self-draft needs 1..{total} layers, got {num_layers}")
    cfg = dataclasses.replace(target.config, num_layers=num_layers)
    with torch.device("meta"):
        draft = LlamaModel(cfg)
    draft.embed_tokens = target.embed_tokens
    draft.layers = nn.ModuleList(target.layers[:num_layers])  # same module objects: shared weights
    draft.norm = target.norm
    draft.rotary = target.rotary
    draft.lm_head = target.lm_head
    return draft.eval()


def quantized_draft(target: LlamaModel, bits: int) -> LlamaModel:
    """A deep copy of the target with RTN weight-only quantization: 8 = per-channel, 4 = group of 64."""
    from ch06_quantization.rtn import QuantSpec, quantize_model_rtn

    if bits not in (4, 8):
        raise ValueError(f"quantized drafts are int8 or int4, not int{bits}")
    spec = QuantSpec(8, "channel") if bits == 8 else QuantSpec(4, "group", 64)
    return quantize_model_rtn(copy.deepcopy(target), spec).eval()


def dynamic_int8_draft(target: LlamaModel) -> LlamaModel:
    """A deep copy with PyTorch's dynamic int8 linears (fbgemm kernels: int8 weights, int8 GEMM on CPU).

    The CPU-fast counterpart of :func:`quantized_draft`: same idea (the target, quantized, as its own
    draft), but a kernel that reads int8 instead of dequantizing to fp32 on every call.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notice for quantized tensor creation
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(target), {nn.Linear}, dtype=torch.qint8).eval()


def gemv_int8_draft(target: LlamaModel) -> LlamaModel:
    """A deep copy whose linears (LM head included) are int8 per-channel ``cpu_gemv.GemvLinear`` layers."""
    from ch06_quantization.cpu_gemv import use_gemv

    draft = copy.deepcopy(target)
    use_gemv(draft, bits=8)
    return draft.eval()


def fused_int8_draft(target: LlamaModel):
    """:func:`gemv_int8_draft` run by ch06's fused C++ decode step (``cpu_decode.FusedDecoder``)."""
    from ch06_quantization.cpu_decode import FusedDecoder

    return FusedDecoder(gemv_int8_draft(target))


def fused_w8a8_draft(target: LlamaModel):
    """:func:`w8a8_draft` run by ch06's fused C++ decode step (``cpu_decode.FusedDecoder``)."""
    from ch06_quantization.cpu_decode import FusedDecoder

    return FusedDecoder(w8a8_draft(target))


def fused_int4_draft(target: LlamaModel):
    """A deep copy with RTN int4 g64 linears and LM head in ``cpu_qgemv``'s packed layout, run by ch06's fused
    C++ decode step: what ``kernel_bench``'s int4 row decodes with."""
    from ch06_quantization.cpu_decode import FusedDecoder
    from ch06_quantization.cpu_qgemv import use_packed
    from ch06_quantization.rtn import QuantSpec, quantize_model_rtn

    spec = QuantSpec(4, "group", 64)
    draft = quantize_model_rtn(copy.deepcopy(target), spec)
    use_packed(draft, head=spec)
    return FusedDecoder(draft.eval())


def w8a8_draft(target: LlamaModel) -> LlamaModel:
    """A deep copy whose linears (LM head included) are ``cpu_w8a8.W8A8Linear`` layers."""
    from ch06_quantization.cpu_w8a8 import use_w8a8

    draft = copy.deepcopy(target)
    use_w8a8(draft)
    return draft.eval()


@torch.inference_mode()
def step_cost(model: LlamaModel, context: int = 64, repeats: int = 5) -> float:
    """Median seconds of one decode step after ``context`` cached tokens (``common.bench.time_fn``)."""
    from common.bench import time_fn

    cache = ContiguousKVCache(model.config, 1, context + 1, model.device, model.dtype)
    ids = torch.randint(0, model.config.vocab_size, (1, context), device=model.device)
    model(ids, cache=cache, logits_to_keep=1)
    one = ids[:, :1]

    def step() -> None:
        model(one, cache=cache, logits_to_keep=1)
        cache.truncate(context)

    return time_fn(step, repeats=repeats, warmup=2, device=model.device).median


def main(argv: list[str] | None = None) -> int:
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch07_speculative.drafts", __doc__)
    add_common_args(parser)
    parser.add_argument("--layers", type=positive_int, default=10, help="layers of the self-draft")
    args = parser.parse_args(argv)
    with friendly_errors():
        target = LlamaModel.from_pretrained(args.model, load_format=args.load_format)
        reps = 3 if args.smoke else 10
        t_target = step_cost(target, repeats=reps)
        rows = [{"model": "target", "step_ms": 1e3 * t_target, "c": 1.0}]
        cands = {f"self-draft {args.layers} layers": truncated_draft(target, args.layers)}
        if not args.smoke:
            cands["int8 RTN"] = quantized_draft(target, 8)
        for name, m in cands.items():
            t = step_cost(m, repeats=reps)
            rows.append({"model": name, "step_ms": 1e3 * t, "c": t / t_target})
        print_table(rows, title="decode step cost (c = draft step / target step)")
        emit_json({"costs": {r["model"]: r["c"] for r in rows}, "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
