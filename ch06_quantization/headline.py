"""Chapter 6's line in the guided tour (``make demo``): GPTQ vs RTN on a real layer, measured in the call.

Layer 0's q/k/v projections of the embedded model read ``input_layernorm(embedding(tokens))``, so their
real calibration inputs cost no forward pass: we build ``H`` from ShareGPT tokens, quantize the stacked
q/k/v weight to int4 g64 with RTN and with GPTQ, and compare the output error on *other* tokens (held-out
text), plus the bytes against fp16.
"""

from __future__ import annotations

import torch

from common.report import Headline


def headline(smoke: bool = False) -> Headline:
    from ch06_quantization.calibration import calibration_ids
    from ch06_quantization.formats import load_weights
    from ch06_quantization.gptq import GPTQConfig, HessianAccumulator, gptq_quantize_weight
    from ch06_quantization.rtn import QuantLinear, QuantSpec, quantize_rtn
    from common.datasets import eval_token_ids
    from common.loader import load_tokenizer

    names = [f"model.layers.0.self_attn.{p}_proj.weight" for p in "qkv"] + [
        "model.embed_tokens.weight", "model.layers.0.input_layernorm.weight"]
    t = load_weights(None, names=names)
    W = torch.cat([t[n] for n in names[:3]])  # [960, 576]
    tok = load_tokenizer(None)
    calib = calibration_ids(tok, 2 if smoke else 8, 128 if smoke else 256)
    test = torch.tensor(eval_token_ids(tok, 256 if smoke else 1024))

    def norm_inputs(ids: torch.Tensor) -> torch.Tensor:  # [n, 576], what q/k/v read in layer 0
        x = t["model.embed_tokens.weight"][ids.reshape(-1)]
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
        return x * t["model.layers.0.input_layernorm.weight"]

    acc = HessianAccumulator(W.shape[1])
    acc.add(norm_inputs(calib))
    spec = QuantSpec(4, "group", 64)
    X = norm_inputs(test)
    ref = X @ W.T

    def err(W_hat: torch.Tensor) -> float:
        return float((X @ W_hat.T - ref).pow(2).mean() / ref.pow(2).mean())

    rtn = quantize_rtn(W, spec)
    gptq = gptq_quantize_weight(W, acc.H, GPTQConfig(spec, act_order=True))
    e_rtn, e_gptq = err(rtn.dequantize()), err(gptq.dequantize())
    pct_bytes = 100 * QuantLinear(gptq).nbytes / (W.numel() * 2)
    text = (f"On layer 0's q/k/v of SmolLM2-135M (int4, groups of 64), GPTQ's output error on held-out text is "
            f"{e_gptq / e_rtn:.2f}x round-to-nearest's ({e_gptq:.2e} vs {e_rtn:.2e}), with weights at "
            f"{pct_bytes:.1f}% of fp16 bytes (scales and zeros included).")
    return Headline("ch06", text, {"gptq_rel_mse": e_gptq, "rtn_rel_mse": e_rtn, "ratio": e_gptq / e_rtn,
                                   "int4_pct_of_fp16": pct_bytes, "calib_tokens": int(calib.numel()),
                                   "test_tokens": int(test.numel())})


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m ch06_quantization.headline", description=__doc__)
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    print(headline(args.smoke).text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
