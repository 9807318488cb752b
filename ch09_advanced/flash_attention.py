"""FlashAttention from scratch (book 9.4): tiled attention with an online softmax, in plain torch.

    python -m ch09_advanced.flash_attention            # equality, peak memory vs N, plot, SDPA backend
    python -m ch09_advanced.flash_attention --smoke

``standard_attention`` materialises the (N, N) score and probability matrices: O(N^2) memory.
``flash_attention`` walks K/V in tiles and keeps, per query row, only a running max ``m``, a running
denominator ``l`` and an unnormalised output ``acc``: O(N) memory, the same result to fp32 rounding.

Peak memory is *measured*, not computed: :class:`LiveBytes` is a ``TorchDispatchMode`` that sees every
tensor an aten op allocates inside the function, adds its storage bytes while the tensor is alive and
subtracts them when Python frees it; the peak of that running sum is what we report (inputs excluded).
It counts tensor storages, not allocator slack, and is the same on CPU and GPU.

FA2 work partitioning (Dao 2023, "FlashAttention-2"), which the loops below mirror:
* the OUTER loop runs over query blocks (``Br`` rows). On a GPU each query block of each (batch, head) is
  one thread block, so the grid is (N / Br) x B x H: sequence-length parallelism even at batch 1.
  FA1 looped over K/V blocks outside and re-read/re-wrote O for every K/V block; FA2 swaps the loops so
  each thread block owns its output rows and writes them exactly once.
* the INNER loop streams K/V blocks (``Bc`` columns) through shared memory; within a thread block the
  warps split the *query rows* (not K as in FA1), so no cross-warp reduction through shared memory.
* the 1/l rescale is deferred to the end (one division per row, not per tile), and for causal attention
  tiles entirely above the diagonal are skipped (``kv_end`` below), halving the work.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from common.bench import stamp_dict, time_fn
from common.cli import add_common_args, friendly_errors, make_parser, seed_everything
from common.paths import reports_dir
from common.report import emit_json, print_table, save_plot


def standard_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """The naive reference. q (B, H, N, D), k/v (B, H, M, D) -> (B, H, N, D); scores (B, H, N, M) in memory."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q @ k.transpose(-2, -1)) * scale  # (B, H, N, M)
    if causal:
        n, m = s.shape[-2:]
        mask = torch.ones(n, m, dtype=torch.bool, device=q.device).tril(m - n)  # bottom-right aligned
        s = s.masked_fill(~mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                    block_q: int = 128, block_k: int = 128) -> torch.Tensor:
    """Tiled attention with online softmax; same signature and result as :func:`standard_attention`."""
    b, h, n, d = q.shape
    m_len = k.shape[-2]
    if block_q < 1 or block_k < 1:
        raise ValueError("block sizes must be >= 1")
    scale = 1.0 / math.sqrt(d)
    offset = m_len - n  # causal: query i sees keys j <= i + offset (bottom-right alignment, like decode)
    out = torch.empty_like(q)  # (B, H, N, D): the only O(N) buffer
    for qs in range(0, n, block_q):  # FA2 outer loop: one GPU thread block per query tile
        qe = min(qs + block_q, n)
        q_blk = q[:, :, qs:qe] * scale  # (B, H, Br, D)
        row_max = torch.full((b, h, qe - qs, 1), float("-inf"), dtype=q.dtype, device=q.device)
        row_sum = torch.zeros((b, h, qe - qs, 1), dtype=q.dtype, device=q.device)
        acc = torch.zeros((b, h, qe - qs, d), dtype=q.dtype, device=q.device)
        kv_end = min(m_len, qe + offset) if causal else m_len  # skip tiles wholly above the diagonal
        for ks in range(0, kv_end, block_k):  # inner loop: stream K/V tiles ("through SRAM")
            ke = min(ks + block_k, kv_end)
            s = q_blk @ k[:, :, ks:ke].transpose(-2, -1)  # (B, H, Br, Bc): the only score tile alive
            if causal and ke - 1 > qs + offset:  # tile crosses the diagonal: mask its upper part
                rows = torch.arange(qs, qe, device=q.device)[:, None] + offset
                cols = torch.arange(ks, ke, device=q.device)[None, :]
                s = s.masked_fill(cols > rows, float("-inf"))
            new_max = torch.maximum(row_max, s.amax(dim=-1, keepdim=True))
            # a row with no visible key yet keeps -inf; exp(-inf - -inf) would be NaN, so guard it
            safe_max = torch.where(torch.isinf(new_max), torch.zeros_like(new_max), new_max)
            p = torch.exp(s - safe_max)  # (B, H, Br, Bc), unnormalised probabilities
            correction = torch.exp(row_max - safe_max)  # rescales what was summed under the old max
            row_sum = row_sum * correction + p.sum(dim=-1, keepdim=True)
            acc = acc * correction + p @ v[:, :, ks:ke]
            row_max = new_max
        out[:, :, qs:qe] = acc / row_sum  # deferred normalisation: once per row (FA2)
    return out


class LiveBytes(TorchDispatchMode):
    """Track bytes of tensors allocated by aten ops inside the ``with`` block; ``peak`` is the maximum."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._owners: dict[int, int] = {}  # storage data_ptr -> bytes, for storages we saw created

    def _free(self, ptr: int) -> None:
        self.live -= self._owners.pop(ptr, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes() > 0:
                ptr = t.untyped_storage().data_ptr()
                if ptr in self._owners:  # a view of a storage we already count
                    continue
                nbytes = t.untyped_storage().nbytes()
                self._owners[ptr] = nbytes
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, ptr)
        return out


def peak_bytes(fn, *args, **kwargs) -> int:
    """Peak bytes of intermediates ``fn(*args)`` keeps alive at once (its output included)."""
    with LiveBytes() as tracker:
        result = fn(*args, **kwargs)
        del result
    return tracker.peak


@dataclass(slots=True)
class MemoryPoint:
    seq_len: int
    standard_bytes: int
    flash_bytes: int

    @property
    def ratio(self) -> float:
        return self.standard_bytes / self.flash_bytes


def memory_sweep(seq_lens: list[int], heads: int = 1, head_dim: int = 64, causal: bool = True,
                 block: int = 128) -> list[MemoryPoint]:
    points = []
    for n in seq_lens:
        q, k, v = (torch.randn(1, heads, n, head_dim) for _ in range(3))
        points.append(MemoryPoint(n, peak_bytes(standard_attention, q, k, v, causal),
                                  peak_bytes(flash_attention, q, k, v, causal, block, block)))
    return points


def sdpa_backend_used(device: str = "cpu", dtype: torch.dtype = torch.float32, causal: bool = True) -> str:
    """Which kernel ``F.scaled_dot_product_attention`` actually ran, read from the profiler's op names.

    On CPU, PyTorch 2.x picks a fused flash-style kernel (``_scaled_dot_product_flash_attention_for_cpu``)
    for fp32/bf16 without an explicit mask, and the unfused math path otherwise. On CUDA the order is
    FlashAttention-2 (sm80+, fp16/bf16, head_dim <= 256), then memory-efficient (xFormers-style, fp32 too),
    then cuDNN, then math; ``torch.nn.attention.sdpa_kernel([...])`` restricts the choice.
    """
    q = torch.randn(1, 4, 256, 64, device=device, dtype=dtype)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        F.scaled_dot_product_attention(q, q, q, is_causal=causal)
    names = [e.key for e in prof.key_averages()]
    for tag in ("flash", "efficient", "cudnn", "math"):
        hits = [n for n in names if tag in n and "scaled_dot_product" in n]
        if hits:
            return hits[0]
    return "math (unfused: bmm + softmax)"


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch09_advanced.flash_attention", __doc__)
    add_common_args(parser, model=False)
    parser.add_argument("--block", type=int, default=128, help="query and key tile size")
    args = parser.parse_args(argv)
    with friendly_errors():
        seed_everything(args.seed)
        result = run(smoke=args.smoke, block=args.block)
        if not args.json:
            print_table(result.pop("_rows"), title="peak bytes of intermediates (measured with LiveBytes)")
        else:
            result.pop("_rows")
        emit_json(result)
    return 0


def run(smoke: bool = False, block: int = 128) -> dict:
    n_check = 300 if smoke else 1000
    q, k, v = (torch.randn(2, 4, n_check, 64) for _ in range(3))
    diffs = {}
    for causal in (False, True):
        ref, got = standard_attention(q, k, v, causal), flash_attention(q, k, v, causal, block, block)
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
        diffs[causal] = float((got - ref).abs().max())
    seq_lens = [256, 512, 1024, 2048, 4096] if not smoke else [256, 512, 1024, 4096]
    points = memory_sweep(seq_lens, block=block)
    reps = 1 if smoke else 3
    t_std = time_fn(lambda: standard_attention(q, k, v, True), repeats=reps)
    t_fla = time_fn(lambda: flash_attention(q, k, v, True, block, block), repeats=reps)
    t_sdpa = time_fn(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), repeats=reps)
    plot = save_plot(reports_dir("ch09") / "flash_memory.png",
                     {"standard (N x N scores)": ([p.seq_len for p in points], [p.standard_bytes / 2**20 for p in points]),
                      "flash (tiled)": ([p.seq_len for p in points], [p.flash_bytes / 2**20 for p in points])},
                     title="attention peak intermediate memory (1 head, d=64, fp32, causal)",
                     xlabel="sequence length N", ylabel="MiB", logx=True, logy=True)
    rows = [{"N": p.seq_len, "standard MiB": p.standard_bytes / 2**20, "flash MiB": p.flash_bytes / 2**20,
             "ratio": p.ratio} for p in points]
    at4096 = next(p for p in points if p.seq_len == 4096)
    return {"_rows": rows, "flash_max_abs_diff": max(diffs.values()), "max_abs_diff_noncausal": diffs[False],
            "max_abs_diff_causal": diffs[True], "flash_memory_ratio_at_4096": at4096.ratio,
            "memory_method": "TorchDispatchMode live-storage bytes", "check_seq_len": n_check,
            "standard_ms": t_std.median * 1e3, "flash_ms": t_fla.median * 1e3, "sdpa_ms": t_sdpa.median * 1e3,
            "sdpa_backend_cpu": sdpa_backend_used(), "plot": str(plot),
            "hardware": stamp_dict(dtype="fp32")}


if __name__ == "__main__":
    raise SystemExit(main())
