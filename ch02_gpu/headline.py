"""Chapter 2's line in the guided tour (``make demo``): the embedded model's memory and its decode MBU.

The memory breakdown is computed from the config (2.3; exact against the real tensors, see
``ch02_gpu.reality``); the read bandwidth and decode speed are measured in this call, so the MBU
(2.2.4, 2.5) is this machine's. With ``smoke`` the decode run is skipped and only the roofline bound
from the measured bandwidth is given.

    python -m ch02_gpu.headline [--smoke]
"""

from __future__ import annotations

import torch

from ch02_gpu.intensity import step_cost
from ch02_gpu.memory import Arch, count_params, kv_bytes_per_token, weights_bytes
from common.bench import measure_read_bandwidth
from common.cli import add_common_args, make_parser
from common.loader import EMBEDDED, load_config
from common.report import Headline, emit_json


def headline(smoke: bool = False) -> Headline:
    a = Arch.from_config(load_config(EMBEDDED), EMBEDDED)
    weights = weights_bytes(count_params(a), "fp32")
    kv = kv_bytes_per_token(a, "fp32")
    bandwidth = measure_read_bandwidth(megabytes=64 if smoke else 256)
    cost = step_cost(a, 1, 1, 64, weight_dtype="fp32")
    bound = bandwidth / cost.bytes  # tokens/s a batch-1 decode can reach at best
    figures = {"weights_bytes": weights, "kv_bytes_per_token": kv, "bandwidth_bytes_per_s": bandwidth,
               "bound_tokens_per_s": bound}
    text = (f"SmolLM2-135M in fp32 needs {weights / 1e6:.0f} MB of weights and {kv / 1024:.0f} KiB of KV cache "
            f"per token (predicted, exact against the real tensors); this machine reads {bandwidth / 1e9:.1f} GB/s "
            f"(measured), so batch-1 decode cannot beat {bound:.0f} tok/s")
    if not smoke:
        from ch02_gpu.roofline import measure_decode, measure_matmul_flops
        from common.loader import load_hf_model

        peak = measure_matmul_flops(1024)
        model = load_hf_model(EMBEDDED, dtype=torch.float32)
        p = measure_decode(model, a, [1], prompt_len=32, steps=6, bandwidth=bandwidth, peak=peak)[0]
        figures.update(tokens_per_s=p.tokens_per_s, mbu=p.mbu)
        text += f"; it decodes {p.tokens_per_s:.1f} tok/s with transformers, MBU {p.mbu:.0%} (measured)"
    return Headline("ch02", text + ".", figures)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch02_gpu.headline", __doc__)
    add_common_args(parser, model=False, smoke=True)
    args = parser.parse_args(argv)
    h = headline(smoke=args.smoke)
    if not args.json:
        print(h.text)
    emit_json({"chapter": h.chapter, **h.figures})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
