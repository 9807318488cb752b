"""Chapter 9's 常见误区 (common pitfalls), each measured with this chapter's code on the embedded model.

1. "torch.compile makes every run faster": ``compile_decode``'s static-cache decode step (``--smoke``:
   the first block only, the full run 4 blocks) eager and compiled (``decompose-mm``, the chapter's best
   mode); the compile time is paid at the first call, so a short run loses and the break-even is
   ``compile_s / (eager s/token - compiled s/token)`` tokens. The full run then compiles the same step
   again in the same process with Inductor's graph cache off (its kernel caches stay warm): what
   tracing and lowering cost even when no C++ is compiled.
2. "A 2-of-8 MoE needs the memory of 2 experts": ``moe.MoELayer`` at SmolLM2's MLP sizes, 8 experts, top
   2, random router on random hidden states: parameters held vs used per token, and how many experts a
   decode step of 1, 8 and 64 tokens touches (every one touched is read); Mixtral-8x7B through ch02's
   calculator.
3. "An image is a few tokens": ``multimodal.image_tokens`` for a 336-px image (patch 14) and a 672-px
   one tiled LLaVA-NeXT-style, and the prefill time of ch04's model (``--smoke``: its first block)
   for a 24-token text prompt with and without one 336-px image's tokens in front.

    python -m ch09_advanced.pitfalls --smoke
    python -m ch09_advanced.pitfalls
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ch04_kvcache.model import LlamaModel
from ch09_advanced.compile_decode import StaticDecoder, compile_step, configure_inductor, greedy
from ch09_advanced.moe import MoELayer, mixtral_numbers
from ch09_advanced.multimodal import image_tokens
from common.pitfalls import Pitfall, pitfalls_main

CH = "ch09"
PROMPT = [1, 504, 3458, 282, 4649, 314, 2030, 47]  # fixed token ids, as in compile_decode
COMPILE_MODE = "decompose-mm"


@contextmanager
def first_blocks(model: LlamaModel, keep: int | None) -> Iterator[LlamaModel]:
    """``model`` cut to its first ``keep`` decoder blocks, restored on exit (no copy)."""
    layers = model.layers
    try:
        if keep:
            model.layers = layers[:keep]
        yield model
    finally:
        model.layers = layers


def _compiled_run(decoder: StaticDecoder, new: int, cache: bool):
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    saved = inductor_config.fx_graph_cache
    inductor_config.fx_graph_cache = cache
    try:
        return greedy(compile_step(decoder, COMPILE_MODE), decoder, PROMPT, new)
    finally:
        inductor_config.fx_graph_cache = saved
        configure_inductor(None)
        torch._dynamo.reset()


def compile_pitfall(model: LlamaModel, smoke: bool) -> Pitfall:
    layers, new = (1, 8) if smoke else (4, 32)
    with first_blocks(model, layers) as m:
        decoder = StaticDecoder(m, len(PROMPT) + new).eval()
        eager = greedy(decoder, decoder, PROMPT, new)
        warm = _compiled_run(decoder, new, cache=True)
        again = None if smoke else _compiled_run(decoder, new, cache=False)
    per_eager, per_comp = 1 / eager.decode_tok_s, 1 / warm.decode_tok_s
    saved = per_eager - per_comp
    compile_s = warm.first_call_s
    breakeven = compile_s / saved if saved > 0 else float("inf")
    short = 32
    short_eager, short_comp = short * per_eager, compile_s + short * per_comp
    measured = {"decoder_layers": layers, "mode": COMPILE_MODE, "eager_tok_s": eager.decode_tok_s,
                "compiled_tok_s": warm.decode_tok_s, "first_call_s": compile_s,
                "same_tokens": warm.tokens == eager.tokens, "breakeven_tokens": breakeven,
                "run32_eager_s": short_eager, "run32_compiled_s": short_comp}
    if again is not None:
        measured["recompile_s_same_process"] = again.first_call_s
    return Pitfall(
        CH, "torch.compile makes every run faster",
        "compiling is free: turn it on and every request gets faster",
        measured,
        f"on {layers} block(s) the compiled step decodes {warm.decode_tok_s / eager.decode_tok_s:.2f}x eager's "
        f"speed ({eager.decode_tok_s:.0f} -> {warm.decode_tok_s:.0f} tok/s) but its first call took "
        f"{compile_s:.1f} s"
        + (f" (compiling it again in this process, kernels cached: {again.first_call_s:.1f} s)" if again else "")
        + f": it pays back after {breakeven:,.0f} tokens; a 32-token run takes {short_comp:.2f} s compiled vs "
        f"{short_eager:.2f} s eager. Compile once per process at start-up (and ship the cache), not per job")


def moe_pitfall(smoke: bool) -> Pitfall:
    hidden, inter, experts, k = 576, 1536, 8, 2
    layer = MoELayer(hidden, inter, experts, k).eval()
    total = sum(p.numel() for n, p in layer.named_parameters() if n.startswith("w_"))
    active = total * k // experts
    touched = {}
    with torch.no_grad():
        for tokens in (1, 8, 64):
            runs = [layer.route(torch.randn(tokens, hidden)).expert_idx.unique().numel()
                    for _ in range(5 if smoke else 50)]
            touched[tokens] = statistics.mean(runs)
    mix = mixtral_numbers()
    mb = 4 / 1e6  # fp32 bytes per parameter, in MB
    return Pitfall(
        CH, "a 2-of-8 MoE needs the memory of 2 experts",
        "only k experts run per token, so memory and bytes read scale with the active parameters",
        {"experts": experts, "top_k": k, "expert_params_total": total, "expert_params_active_per_token": active,
         "expert_mb_total_fp32": total * mb, "expert_mb_active_fp32": active * mb,
         **{f"experts_touched_{t}_tokens": v for t, v in touched.items()},
         "mixtral_params_b": mix["mixtral_params_b"], "mixtral_active_params_b": mix["mixtral_active_params_b"],
         "mixtral_weights_gib_bf16": mix["mixtral_weights_gib_bf16"]},
        f"the layer holds {total * mb:.0f} MB of experts but a token uses {active * mb:.0f} MB; a decode step of "
        f"1 / 8 / 64 tokens touched {touched[1]:.1f} / {touched[8]:.1f} / {touched[64]:.1f} of {experts} "
        f"experts, so a batch reads nearly all of them. Mixtral-8x7B computes like "
        f"{mix['mixtral_active_params_b']:.1f}B parameters but must hold {mix['mixtral_params_b']:.1f}B "
        f"({mix['mixtral_weights_gib_bf16']:.0f} GiB in bf16)")


def _prefill_s(model: nn.Module, ids: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        model(ids)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(ids)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def image_pitfall(model: LlamaModel, smoke: bool) -> Pitfall:
    one, tiled = image_tokens(336), image_tokens(672, tile=336)
    layers, repeats = (1, 1) if smoke else (None, 5)
    text = torch.randint(0, model.config.vocab_size, (1, 24))
    # the image's tokens stand in as ids: a prefill's cost depends on how many positions, not what is in them
    with_image = torch.cat([torch.randint(0, model.config.vocab_size, (1, one)), text], dim=1)
    with first_blocks(model, layers) as m:
        t_text, t_image = _prefill_s(m, text, repeats), _prefill_s(m, with_image, repeats)
        n_layers = len(m.layers)
    return Pitfall(
        CH, "an image is a few tokens",
        "adding a picture to a prompt costs about as much as a few words",
        {"tokens_336px": one, "tokens_672px_tiled": tiled, "prefill_layers": n_layers, "text_tokens": 24,
         "prefill_s_text": t_text, "prefill_s_text_plus_image": t_image, "image_prefill_ratio": t_image / t_text},
        f"one 336-px image is {one} tokens ({tiled:,} tiled at 672 px); in front of a 24-token question it made "
        f"the prefill of {n_layers} blocks {t_image / t_text:.1f}x longer ({t_text * 1e3:.0f} -> "
        f"{t_image * 1e3:.0f} ms), and every image token also takes KV cache like text")


def run(smoke: bool, model: LlamaModel | None = None) -> list[Pitfall]:
    model = model if model is not None else LlamaModel.from_pretrained(None).eval()
    torch.manual_seed(0)
    return [compile_pitfall(model, smoke), moe_pitfall(smoke), image_pitfall(model, smoke)]


def main(argv: list[str] | None = None) -> int:
    return pitfalls_main("python -m ch09_advanced.pitfalls", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
