"""Chapter 9's line in the guided tour (``make demo``): FlashAttention's memory, measured in the call.

Tiled attention with online softmax is checked equal to standard attention (fp32), then the peak bytes
of intermediates of both are measured (``LiveBytes``) at one sequence length.

    python -m ch09_advanced.headline [--smoke]
"""

from __future__ import annotations

from common.report import Headline


def headline(smoke: bool = False) -> Headline:
    import torch

    from ch09_advanced.flash_attention import flash_attention, memory_sweep, standard_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 4, 256, 64) for _ in range(3))
    diff = float((flash_attention(q, k, v, True) - standard_attention(q, k, v, True)).abs().max())
    n = 1024 if smoke else 4096
    p = memory_sweep([n])[0]
    figures = {"seq_len": n, "flash_max_abs_diff": diff, "standard_mib": p.standard_bytes / 2**20,
               "flash_mib": p.flash_bytes / 2**20, "memory_ratio": p.ratio}
    text = (f"FlashAttention written in plain torch matched standard attention to {diff:.1e} (fp32) while its "
            f"intermediates peaked at {figures['flash_mib']:.2f} MiB instead of {figures['standard_mib']:.0f} MiB "
            f"at N={n} ({p.ratio:.0f}x less, one head)")
    return Headline("ch09", text, figures)


def main(argv: list[str] | None = None) -> int:
    from common.cli import headline_main

    return headline_main("python -m ch09_advanced.headline", __doc__, headline, "N=1024 instead of 4096", argv)


if __name__ == "__main__":
    raise SystemExit(main())
