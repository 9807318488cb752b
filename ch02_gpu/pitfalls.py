"""Chapter 2's 常见误区 (common pitfalls), each measured with this chapter's code.

1. KV memory sized with ``num_attention_heads`` (``hidden_size``) instead of ``num_key_value_heads``:
   ``memory.kv_bytes_per_token_naive`` vs ``memory.kv_bytes_per_token`` on the embedded model's config
   (9 query heads, 3 KV heads: 3x) and the llama-3-8b preset (32 vs 8: 4x), and what the mistake does
   to vLLM-CPU's predicted KV capacity (``estimate.vllm_cpu_kv_capacity``).
2. "Decode is compute-bound": batch-1 decode of the embedded model timed by ``roofline.measure_decode``
   against this machine's measured roofs; MBU (bandwidth used) vs MFU (FLOPs used), intensity vs ridge.
3. "100% utilisation means the chip is busy": the same decode keeps every torch thread on the CPU
   (process CPU time / wall time / threads) while it uses a few percent of the FLOPs it could do.

    python -m ch02_gpu.pitfalls --smoke
    python -m ch02_gpu.pitfalls
"""

from __future__ import annotations

import sys
import time

import torch

from ch02_gpu.estimate import vllm_cpu_kv_capacity
from ch02_gpu.memory import Arch, GiB, kv_bytes_per_token, kv_bytes_per_token_naive
from ch02_gpu.parallel import recurrence_tensor
from ch02_gpu.roofline import measure_decode, measure_matmul_flops
from common.bench import measure_read_bandwidth
from common.loader import EMBEDDED, load_config, load_hf_model
from common.pitfalls import Pitfall, pitfalls_main

CH = "ch02"


def gqa_pitfall() -> Pitfall:
    """The KV formula without GQA, on the embedded model and Llama-3-8B (configs only)."""
    small = Arch.from_config(load_config(EMBEDDED), EMBEDDED)
    big = Arch.from_config(load_config("llama-3-8b"), "llama-3-8b")
    r_small = kv_bytes_per_token_naive(small, "fp32") / kv_bytes_per_token(small, "fp32")
    r_big = kv_bytes_per_token_naive(big, "bf16") / kv_bytes_per_token(big, "bf16")
    true_tokens = vllm_cpu_kv_capacity(small, "fp32", 1).tokens
    block = 128
    naive_tokens = int(GiB // (kv_bytes_per_token_naive(small, "fp32") * block)) * block
    ctx = 8192
    big_true, big_naive = (f(big, "bf16") * ctx / GiB for f in (kv_bytes_per_token, kv_bytes_per_token_naive))
    return Pitfall(
        CH, "KV cache sized with attention heads, not KV heads (GQA ignored)",
        "KV per token = 2 x layers x hidden_size x bytes",
        {"smollm2_heads": small.num_heads, "smollm2_kv_heads": small.num_kv_heads,
         "smollm2_overstatement": r_small, "llama3_8b_overstatement": r_big,
         "vllm_cpu_1gib_tokens": true_tokens, "vllm_cpu_1gib_tokens_naive": naive_tokens,
         "llama3_8b_kv_gib_8k": big_true, "llama3_8b_kv_gib_8k_naive": big_naive},
        f"KV memory overstated {r_small:.0f}x for SmolLM2 and {r_big:.0f}x for Llama-3-8B: 1 GiB of vLLM-CPU "
        f"KV space looks like {naive_tokens:,} tokens instead of {true_tokens:,}; an 8K-context Llama-3-8B "
        f"request looks like {big_naive:.1f} GiB instead of {big_true:.1f} GiB, so a card is rejected or "
        f"the batch sized {r_big:.0f}x too small")


def decode_pitfalls(model, smoke: bool) -> list[Pitfall]:
    """Batch-1 decode on this CPU: MBU vs MFU, and the CPU time it keeps busy."""
    arch = Arch.from_config(model.config.to_dict(), model.config.name_or_path or EMBEDDED)
    bandwidth = measure_read_bandwidth(megabytes=64 if smoke else 256)
    peak = measure_matmul_flops(512 if smoke else 2048)
    point = measure_decode(model, arch, [1], prompt_len=8 if smoke else 128, steps=2 if smoke else 16,
                           bandwidth=bandwidth, peak=peak)[0]
    ridge = peak / bandwidth
    bound = "compute" if point.mfu > point.mbu else "memory"
    compute = Pitfall(
        CH, "decode is compute-bound",
        "a chip with more FLOP/s decodes one request faster",
        {"intensity_flop_per_byte": point.cost.intensity, "ridge_flop_per_byte": ridge,
         "mbu_batch1": point.mbu, "mfu_batch1": point.mfu, "tokens_per_s": point.tokens_per_s},
        f"batch-1 decode does {point.cost.intensity:.2f} FLOP/byte against a ridge of {ridge:.1f}: it uses "
        f"{point.mbu:.0%} of the bandwidth and {point.mfu:.1%} of the FLOPs ({bound} roof closer); doubling "
        f"FLOP/s would leave its memory-bound limit unchanged, bandwidth (or fewer bytes) is what pays")
    return [compute, busy_pitfall(peak, smoke)]


def _busy(fn) -> tuple[float, float]:
    """(seconds, cores busy = process CPU time / wall time) of ``fn()``."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    fn()
    wall = time.perf_counter() - wall0
    return wall, (time.process_time() - cpu0) / wall


def busy_pitfall(peak: float, smoke: bool) -> Pitfall:
    """2.1.4's recurrence (one tiny op per step) vs a matmul: both keep the processor "busy"."""
    steps = 2_000 if smoke else 50_000
    rec_s, rec_busy = _busy(lambda: recurrence_tensor(steps))
    n = 512 if smoke else 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    reps = 3 if smoke else 20
    mm_s, mm_busy = _busy(lambda: [a @ b for _ in range(reps)])
    rec_flops, mm_flops = 2 * steps / rec_s, reps * 2 * n**3 / mm_s
    share = rec_flops / peak
    return Pitfall(
        CH, "100% utilisation means the hardware is busy",
        "the utilisation counter (nvidia-smi's GPU-Util, top's %CPU) measures how much work is done",
        {"recurrence_cores_busy": rec_busy, "matmul_cores_busy": mm_busy, "recurrence_flop_s": rec_flops,
         "matmul_flop_s": mm_flops, "recurrence_share_of_peak": share},
        f"a chain of one-element ops kept {rec_busy:.2f} cores busy (the matmul {mm_busy:.2f}) while doing "
        f"{rec_flops / 1e6:.2f} MFLOP/s, {share:.4%} of the measured matmul peak: a utilisation counter says a "
        f"kernel was running, not how much of the chip it used; MFU/MBU say that")




def run(smoke: bool, model=None) -> list[Pitfall]:
    model = model if model is not None else load_hf_model(EMBEDDED, dtype=torch.float32)
    return [gqa_pitfall(), *decode_pitfalls(model, smoke)]


def main(argv: list[str] | None = None) -> int:
    return pitfalls_main("python -m ch02_gpu.pitfalls", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
