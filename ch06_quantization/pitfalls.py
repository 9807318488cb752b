"""Chapter 6's 常见误区 (common pitfalls), each measured with this chapter's code on the embedded model.

1. "4-bit is 4-bit, the granularity is a detail": RTN at 4 bits (``rtn.fake_quantize``, the weights
   ``QuantLinear`` computes with) with one scale per tensor, one per output channel (full run), and one
   per group of 32 weights; perplexity
   (``evaluate.perplexity``) on held-out ShareGPT text against fp32. (The embedded model's weights
   were 4-bit with small groups upstream, so group-32 is almost free on it; per-tensor is not.)
2. "Fewer bits decode faster": batch-1 decode (``evaluate.decode_tok_s``) of the group-32 int4 model
   (``--smoke``: its first 4 blocks),
   whose ``QuantLinear`` dequantizes the whole weight on every forward, against fp32. Memory shrinks;
   speed only follows with a kernel that reads the packed bytes (``cpu_gemv``, ``cpu_decode``).

    python -m ch06_quantization.pitfalls --smoke
    python -m ch06_quantization.pitfalls
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ch06_quantization.compare import truncate
from ch06_quantization.evaluate import decode_tok_s, eval_windows, load_model, perplexity, weight_bytes
from ch06_quantization.rtn import QuantSpec, decoder_linears, fake_quantize, quantize_model_rtn
from common.loader import load_tokenizer
from common.pitfalls import Pitfall, pitfalls_main

CH = "ch06"
SMOKE_LAYERS = 4
SPECS = {"int4 per-tensor": QuantSpec(4, "tensor"), "int4 per-channel": QuantSpec(4, "channel"),
         "int4 group 32": QuantSpec(4, "group", group_size=32)}


@contextmanager
def fake_quantized(model: nn.Module, spec: QuantSpec) -> Iterator[nn.Module]:
    """``model`` with every decoder linear's weight replaced by its RTN round trip (``fake_quantize``: the
    weights ``QuantLinear`` would compute with), restored on exit; no copy of the model."""
    saved = {name: lin.weight.data for name, lin in decoder_linears(model).items()}
    try:
        for name, lin in decoder_linears(model).items():
            lin.weight.data = fake_quantize(saved[name], spec)
        yield model
    finally:
        for name, lin in decoder_linears(model).items():
            lin.weight.data = saved[name]


@contextmanager
def first_blocks(model: nn.Module, keep: int | None) -> Iterator[nn.Module]:
    """``model`` cut to its first ``keep`` decoder blocks (``compare.truncate``), restored on exit."""
    layers = model.layers
    try:
        yield truncate(model, keep)
    finally:
        model.layers = layers


@torch.no_grad()
def run(smoke: bool, model=None, tokenizer=None) -> list[Pitfall]:
    model = model if model is not None else load_model()
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(None)
    windows = eval_windows(tokenizer, 64, 64) if smoke else eval_windows(tokenizer, 512, 128)
    specs = {k: v for k, v in SPECS.items() if not (smoke and "channel" in k)}
    ppl = {"fp32": perplexity(model, windows)}
    for name, spec in specs.items():
        with fake_quantized(model, spec) as q:
            ppl[name] = perplexity(q, windows)
    # speed: --smoke times the first SMOKE_LAYERS blocks only (the same linears in every block, so the
    # same direction, in seconds); the full run times the whole model. Bytes: the decoder linears timed.
    layers = SMOKE_LAYERS if smoke else None
    prompt, new, repeats = windows[0, :16].tolist(), (4 if smoke else 32), (1 if smoke else 3)
    with first_blocks(model, layers) as fp32:
        int4 = quantize_model_rtn(copy.deepcopy(fp32), SPECS["int4 group 32"])
        tok_s = {"fp32": decode_tok_s(fp32, prompt, new, repeats),
                 "int4 group 32": decode_tok_s(int4, prompt, new, repeats)}
        mb = {"fp32": weight_bytes(fp32, linears_only=True) / 1e6,
              "int4 group 32": weight_bytes(int4, linears_only=True) / 1e6}
        n_layers = len(fp32.layers)
    del int4
    tokens = windows.shape[0] * (windows.shape[1] - 1)
    granularity = Pitfall(
        CH, "4-bit is 4-bit, whatever the scale granularity",
        "one scale per tensor is as good as one per group of 32 weights",
        {"ppl_tokens": tokens, **{f"ppl_{k.replace(' ', '_').replace('-', '_')}": v for k, v in ppl.items()},
         "ppl_ratio_per_tensor": ppl["int4 per-tensor"] / ppl["fp32"],
         "ppl_ratio_group32": ppl["int4 group 32"] / ppl["fp32"]},
        f"int4 with one scale per tensor multiplies perplexity by {ppl['int4 per-tensor'] / ppl['fp32']:,.0f} "
        f"({ppl['fp32']:.2f} -> {ppl['int4 per-tensor']:,.0f}: the model is broken); with a scale per 32 "
        f"weights by {ppl['int4 group 32'] / ppl['fp32']:.3f}"
        + (f", per channel by {ppl['int4 per-channel'] / ppl['fp32']:.2f}" if "int4 per-channel" in ppl else "")
        + f", at the same bits ({tokens} tokens scored)")
    speed = tok_s["int4 group 32"] / tok_s["fp32"]
    smaller = mb["fp32"] / mb["int4 group 32"]
    faster = Pitfall(
        CH, "fewer bits decode faster",
        "int4 weights read 8x fewer bytes than fp32, so decode is up to 8x faster",
        {"decoder_layers": n_layers, "tok_s_fp32": tok_s["fp32"], "tok_s_int4_g32": tok_s["int4 group 32"], "int4_vs_fp32_speed": speed,
         "linear_mb_fp32": mb["fp32"], "linear_mb_int4_g32": mb["int4 group 32"], "int4_smaller_by": smaller},
        f"the int4 linears of {n_layers} blocks are {smaller:.1f}x smaller ({mb['fp32']:.0f} -> "
        f"{mb['int4 group 32']:.0f} MB with scales and zeros) but the model "
        f"decodes at {speed:.2f}x fp32's speed ({tok_s['fp32']:.1f} -> {tok_s['int4 group 32']:.1f} tok/s): "
        f"QuantLinear dequantizes every weight to fp32 on every step, so it reads more, not less; the "
        f"bytes only turn into speed with a kernel that reads them packed (cpu_gemv / cpu_decode)")
    return [granularity, faster]


def main(argv: list[str] | None = None) -> int:
    return pitfalls_main("python -m ch06_quantization.pitfalls", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
