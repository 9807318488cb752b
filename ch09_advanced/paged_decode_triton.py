"""Paged decode attention as a Triton kernel: the engine's decode step reads K/V in place on a GPU (9.4, 9.5).

    python -m ch09_advanced.paged_decode_triton            # GPU: kernel vs ch04's gather + SDPA, timed
    python -m ch09_advanced.paged_decode_triton --smoke    # CPU: interpreter correctness check only

The GPU twin of ch04's ``paged_decode_cpu.py``, with the same contract (ch04's ``DecodeKernel``:
``kernel(q, k_flat, v_flat, plan)``) and the same :func:`install`, so chapter 5's engine uses it unchanged.
Chapter 4's torch path copies every sequence's K and V out of the block pool (padded to the longest
context) before SDPA reads the copies; this kernel reads each K/V row once where it lies.

Work partitioning: one program per (sequence, KV head). GQA: the ``group`` query heads sharing a KV head
live in the same program, so each K/V row is loaded once for all of them (FlashInfer's decode kernels group
heads the same way). The program walks the sequence's block table a tile of
``TILE`` tokens at a time (a tile spans one or more blocks; each token's slot is
``table[t // block_size] * block_size + t % block_size``), keeps a running max, running sum and an fp32
accumulator per query head (online softmax, as in ``flash_attention.py``) and writes the output once.
With few sequences the grid is small (16 sequences x 3 KV heads = 48 programs on a 132-SM H100); splitting
long contexts across programs and merging the partial softmaxes (flash-decoding, vLLM's v2) is the next step.

Without a GPU the same kernel runs in Triton's interpreter (``TRITON_INTERPRET=1``, set by ``triton_ops``
before triton is imported): correct but slow, so the CPU path is a correctness check, not a benchmark.
The CPU run also compiles the real kernel for an H100 (sm_90) with Triton's bundled ptxas and prints its
registers per thread and spill bytes (:func:`offline_compile`): that is how :func:`launch_shape` was sized
without a GPU.
"""

from __future__ import annotations

import math
import os

import torch

from ch04_kvcache.paged_attention import AttentionMetadata, PagedPlan, build_plan, paged_attention
from ch09_advanced.triton_ops import HAS_TRITON  # first: sets TRITON_INTERPRET before triton is imported
from common.bench import stamp_dict, time_fn
from common.cli import UsageError, add_common_args, friendly_errors, make_parser, seed_everything
from common.device import dtype_name, pick_dtype
from common.report import emit_json, print_table

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _paged_decode_kernel(Q, K, V, OUT, TABLES, CTX, scale,  # noqa: N803 - Triton's naming style
                             stride_qs, stride_qh, stride_ks, stride_kh, stride_vs, stride_vh,
                             stride_os, stride_oh, stride_ts, block_size, group, head_dim,
                             GROUP_P: tl.constexpr, D_P: tl.constexpr, TILE: tl.constexpr):  # noqa: N803
        s = tl.program_id(0)  # sequence
        kvh = tl.program_id(1)  # KV head; query heads kvh * group ... kvh * group + group - 1 share it
        n = tl.load(CTX + s)  # context length of this sequence
        g = tl.arange(0, GROUP_P)
        d = tl.arange(0, D_P)
        g_ok = g < group
        d_ok = d < head_dim
        heads = kvh * group + g  # (GROUP_P,)
        q = tl.load(Q + s * stride_qs + heads[:, None] * stride_qh + d[None, :],
                    mask=g_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)  # (GROUP_P, D_P)
        m = tl.full([GROUP_P], float("-inf"), tl.float32)  # running max of the scores
        l_sum = tl.zeros([GROUP_P], tl.float32)  # running sum of exp(score - m)
        acc = tl.zeros([GROUP_P, D_P], tl.float32)  # running sum of exp(score - m) * v
        for start in range(0, n, TILE):
            t = start + tl.arange(0, TILE)  # token positions of this tile
            t_ok = t < n
            blk = tl.load(TABLES + s * stride_ts + t // block_size, mask=t_ok, other=0)  # physical block ids
            slot = blk * block_size + t % block_size  # (TILE,) rows of k_flat / v_flat
            kv_ok = t_ok[:, None] & d_ok[None, :]
            k = tl.load(K + slot[:, None] * stride_ks + kvh * stride_kh + d[None, :], mask=kv_ok,
                        other=0.0).to(tl.float32)  # (TILE, D_P): each K row read once for the whole group
            scores = tl.sum(q[:, None, :] * k[None, :, :], axis=2) * scale  # (GROUP_P, TILE)
            scores = tl.where(t_ok[None, :], scores, float("-inf"))
            m_new = tl.maximum(m, tl.max(scores, axis=1))  # finite: every tile holds at least one token
            alpha = tl.exp(m - m_new)  # rescales what was accumulated under the old max (0 on the first tile)
            p = tl.exp(scores - m_new[:, None])  # (GROUP_P, TILE), 0 on masked tokens
            v = tl.load(V + slot[:, None] * stride_vs + kvh * stride_vh + d[None, :], mask=kv_ok,
                        other=0.0).to(tl.float32)  # (TILE, D_P)
            acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v[None, :, :], axis=1)
            l_sum = l_sum * alpha + tl.sum(p, axis=1)
            m = m_new
        out = acc / l_sum[:, None]
        tl.store(OUT + s * stride_os + heads[:, None] * stride_oh + d[None, :], out.to(OUT.dtype.element_ty),
                 mask=g_ok[:, None] & d_ok[None, :])


def interpreting() -> bool:
    """True when Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1`` at import)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def launch_shape(group: int, head_dim: int) -> tuple[int, int]:
    """(tokens per loop step, warps) keeping each (group, tile, head_dim) product at <= 32 values a thread.

    Checked offline with Triton's own ptxas for sm_90 (``cuobjdump --dump-resource-usage``): at 32 values a
    thread the kernel uses 110-180 registers and no local memory; at 64 (4 warps) it spills for 128-dim heads.
    """
    gd = triton.next_power_of_2(group) * triton.next_power_of_2(head_dim)
    warps = 8 if gd >= 512 else 4
    return min(128, max(16, triton.next_power_of_2(32 * 32 * warps // gd))), warps


def offline_compile(shapes: list[tuple[int, int, str]], arch: int = 90) -> list[dict]:
    """Compile the kernel for an NVIDIA GPU without one and read registers per thread and stack bytes.

    ``shapes``: (group, head_dim, dtype) triples. Runs in a fresh interpreter with ``TRITON_INTERPRET=0``
    (Triton's interpreter patches ``triton.language`` in the process that used it), compiles with Triton's
    bundled ptxas and reads the cubin with its bundled ``cuobjdump``: spilled registers show as stack bytes.
    This is how :func:`launch_shape` was sized on a machine with no GPU.
    """
    import json
    import subprocess
    import sys

    code = (f"import json; from ch09_advanced.paged_decode_triton import _compile_usage as c; "
            f"print(json.dumps([c(g, d, t, {int(arch)}) for g, d, t in {[tuple(x) for x in shapes]!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "TRITON_INTERPRET": "0"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def _compile_usage(group: int, head_dim: int, dtype: str, arch: int) -> dict:
    import re
    import subprocess
    import tempfile
    from pathlib import Path

    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import ASTSource

    tile, warps = launch_shape(group, head_dim)
    ptr = f"*{dtype}"
    sig = {"Q": ptr, "K": ptr, "V": ptr, "OUT": ptr, "TABLES": "*i64", "CTX": "*i64", "scale": "fp32",
           **{name: "i32" for name in ("stride_qs", "stride_qh", "stride_ks", "stride_kh", "stride_vs", "stride_vh",
                                       "stride_os", "stride_oh", "stride_ts", "block_size", "group", "head_dim")},
           "GROUP_P": "constexpr", "D_P": "constexpr", "TILE": "constexpr"}
    consts = {"GROUP_P": triton.next_power_of_2(group), "D_P": triton.next_power_of_2(head_dim), "TILE": tile}
    compiled = triton.compile(ASTSource(_paged_decode_kernel, sig, consts), target=GPUTarget("cuda", arch, 32),
                              options={"num_warps": warps})
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernel.cubin"
        cubin.write_bytes(compiled.asm["cubin"])
        tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
        usage = subprocess.run([str(tool), "--dump-resource-usage", str(cubin)], capture_output=True, text=True,
                               check=True).stdout
    found = dict(re.findall(r"\b(REG|STACK):(\d+)", usage))
    return {"arch": f"sm_{arch}", "dtype": dtype, "group": group, "head_dim": head_dim, "tile": tile, "warps": warps,
            "registers": int(found["REG"]), "stack_bytes": int(found["STACK"])}


def kernel(q: torch.Tensor, k_flat: torch.Tensor, v_flat: torch.Tensor, plan: PagedPlan,
           tile: int | None = None) -> torch.Tensor:
    """ch04's ``DecodeKernel``: q (S, H, D), k_flat/v_flat (num_slots, Hkv, D) -> (S, H, D)."""
    if not HAS_TRITON:
        raise RuntimeError("triton is not installed (pip install triton)")
    if q.device.type != "cuda" and not interpreting():
        raise ValueError("the Triton paged decode kernel runs on a CUDA GPU, or on CPU only under TRITON_INTERPRET=1")
    s, h, d = q.shape
    hkv = k_flat.shape[1]
    if h % hkv:
        raise ValueError(f"{h} query heads are not a multiple of {hkv} KV heads")
    q, k_flat, v_flat = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k_flat, v_flat))
    group = h // hkv
    tables = plan.block_tables
    out = torch.empty_like(q)  # (S, H, D)
    default_tile, warps = launch_shape(group, d)
    _paged_decode_kernel[(s, hkv)](
        q, k_flat, v_flat, out, tables, plan.context_lens_t, 1.0 / math.sqrt(d),
        q.stride(0), q.stride(1), k_flat.stride(0), k_flat.stride(1), v_flat.stride(0), v_flat.stride(1),
        out.stride(0), out.stride(1), tables.stride(0), plan.block_size, group, d,
        GROUP_P=triton.next_power_of_2(group), D_P=triton.next_power_of_2(d), TILE=tile or default_tile,
        num_warps=warps)
    return out


def install(engine) -> None:
    """Make a ch05 ``LLMEngine`` (or any ch04 ``LlamaModel`` holder) use the kernel for decode steps."""
    model = getattr(engine, "model", engine)
    if not HAS_TRITON:
        raise RuntimeError("triton is not installed (pip install triton), so the Triton decode kernel cannot run")
    device = next(model.parameters()).device
    if device.type != "cuda" and not (device.type == "cpu" and interpreting()):
        raise ValueError(f"the Triton paged decode kernel needs the engine on a CUDA GPU (this one is on "
                         f"{device}); on CPU use ch09_advanced.paged_decode_bench instead")
    model.decode_kernel = kernel


def make_case(ctx_lens: list[int], block_size: int = 16, hkv: int = 3, group: int = 3, d: int = 64,
              dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", seed: int = 0,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, AttentionMetadata]:
    """A decode batch with the given contexts in shuffled blocks: q (S, H, D), K/V pools, metadata."""
    g = torch.Generator().manual_seed(seed)
    need = [-(-c // block_size) for c in ctx_lens]
    perm = (torch.randperm(sum(need), generator=g) + 1).tolist()  # block 0 stays unused (table padding)
    tables, i = [], 0
    for n in need:
        tables.append(perm[i:i + n])
        i += n
    shape = (sum(need) + 1, block_size, hkv, d)  # (num_blocks, block_size, Hkv, D)
    k, v = (torch.randn(shape, generator=g).to(device, dtype) for _ in range(2))
    q = torch.randn(len(ctx_lens), hkv * group, d, generator=g).to(device, dtype)
    slots = torch.tensor([t[(c - 1) // block_size] * block_size + (c - 1) % block_size
                          for t, c in zip(tables, ctx_lens, strict=True)])  # the new token's slot
    return q, k, v, AttentionMetadata([1] * len(ctx_lens), list(ctx_lens), tables, slots)


def compare(ctx_lens: list[int], block_size: int, hkv: int, group: int, d: int, dtype: torch.dtype,
            device: str, repeats: int = 20) -> dict:
    """Kernel vs ch04's gather + SDPA on one decode batch (one layer): max abs diff and, on GPU, times."""
    q, k, v, meta = make_case(ctx_lens, block_size, hkv, group, d, dtype, device)
    kf, vf = k.view(-1, hkv, d), v.view(-1, hkv, d)
    torch_plan = build_plan(meta, block_size, q.device)
    kernel_plan = build_plan(meta, block_size, q.device, decode_kernel=kernel)
    ref = paged_attention(q, kf, vf, torch_plan)
    got = paged_attention(q, kf, vf, kernel_plan)
    row = {"seqs": len(ctx_lens), "ctx": max(ctx_lens), "heads": f"{hkv * group}/{hkv}", "head dim": d,
           "block": block_size, "dtype": dtype_name(dtype),
           "max abs diff": (got.float() - ref.float()).abs().max().item()}
    if q.device.type == "cuda":  # timings only mean something on the real kernel
        t_torch = time_fn(lambda: paged_attention(q, kf, vf, torch_plan), repeats=repeats, warmup=3, device=device)
        t_kernel = time_fn(lambda: paged_attention(q, kf, vf, kernel_plan), repeats=repeats, warmup=3,
                           device=device)
        kv_bytes = 2 * sum(ctx_lens) * hkv * d * k.element_size()  # K and V rows the kernel must read
        row.update({"torch us": t_torch.median * 1e6, "triton us": t_kernel.median * 1e6,
                    "speedup": t_torch.median / t_kernel.median,
                    "triton GB/s": kv_bytes / t_kernel.median / 1e9})
    return row


# (seqs, ctx, block_size, hkv, group, head_dim): SmolLM2-135M's attention shape and Llama-3-8B's
GPU_SHAPES = [(16, 512, 16, 3, 3, 64), (16, 2048, 16, 3, 3, 64), (64, 2048, 16, 8, 4, 128),
              (16, 8192, 16, 8, 4, 128), (64, 4096, 16, 8, 4, 128)]
GPU_SMOKE_SHAPES = [(16, 512, 16, 3, 3, 64), (16, 2048, 16, 8, 4, 128)]
INTERPRETER_SHAPES = [(3, 37, 4, 2, 3, 16), (2, 33, 16, 1, 1, 32)]  # tiny: the interpreter is numpy per op


def run(smoke: bool = False, dtype: str = "auto") -> dict:
    """GPU: the table of timings; CPU: the interpreter check. Returns the JSON payload (rows under ``_rows``)."""
    out: dict = {"bench": "ch09_advanced.paged_decode_triton", "triton_installed": HAS_TRITON}
    if not HAS_TRITON:
        print("triton is not installed, so the Triton paged decode kernel cannot run; pip install triton.")
        return {**out, "mode": "unavailable", "triton_paged_max_abs_diff": None, "_rows": []}
    on_gpu = torch.cuda.is_available() and not interpreting()
    if not on_gpu and not interpreting():
        raise UsageError("no GPU and TRITON_INTERPRET is not 1; set TRITON_INTERPRET=1 before starting Python")
    dev = "cuda" if on_gpu else "cpu"
    torch_dtype = pick_dtype(dtype, dev)
    if not on_gpu:
        print("No GPU: running the Triton paged decode kernel in the interpreter (TRITON_INTERPRET=1), "
              "correctness only, no timings.")
        torch_dtype = torch.float32  # the interpreter computes in numpy: fp32 only
    shapes = (GPU_SMOKE_SHAPES if smoke else GPU_SHAPES) if on_gpu else INTERPRETER_SHAPES
    # fp32 first (the accuracy figure), then the timed dtype when it differs (bf16 by default on a GPU)
    cases = [(shape, dt) for dt in dict.fromkeys([torch.float32, torch_dtype]) for shape in shapes]
    rows = []
    for (seqs, ctx, bs, hkv, group, d), dt in cases:
        # ragged contexts: from ctx / 4 up to ctx, the longest exactly ctx
        lens = torch.randint(max(1, ctx // 4), ctx + 1, (seqs,), generator=torch.Generator().manual_seed(seqs))
        lens[0] = ctx
        rows.append(compare(lens.tolist(), bs, hkv, group, d, dt, dev, repeats=5 if smoke else 20))
    fp32 = [r["max abs diff"] for r in rows if r["dtype"] == "fp32"]
    low = [r["max abs diff"] for r in rows if r["dtype"] != "fp32"]
    out.update(mode="gpu" if on_gpu else "interpreter", dtype=dtype_name(torch_dtype),
               triton_paged_max_abs_diff=max(fp32), _rows=rows)
    if low:
        out[f"triton_paged_max_abs_diff_{dtype_name(torch_dtype)}"] = max(low)
    if on_gpu:
        out.update(triton_paged_speedup_at_longest=rows[-1]["speedup"],
                   triton_paged_gb_s_at_longest=rows[-1]["triton GB/s"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch09_advanced.paged_decode_triton", __doc__)
    add_common_args(parser, model=False)
    args = parser.parse_args(argv)
    with friendly_errors():
        seed_everything(args.seed)
        out = run(args.smoke, args.dtype)
        rows = out.pop("_rows")
        if rows and not args.json:
            where = "GPU" if out["mode"] == "gpu" else "CPU interpreter, correctness only"
            print_table(rows, title=f"one layer's paged decode attention: Triton kernel vs gather + SDPA ({where})")
        if out["mode"] == "interpreter":  # no GPU: still compile the real kernel for an H100 and read its registers
            try:
                out["offline_sm90"] = offline_compile([(3, 64, "bf16"), (4, 128, "bf16")])
            except Exception as exc:  # noqa: BLE001 - optional: Triton built without its NVIDIA backend
                print(f"could not compile for sm_90 offline ({type(exc).__name__}); the interpreter check stands.")
            if out.get("offline_sm90") and not args.json:
                print_table(out["offline_sm90"], title="the same kernel compiled for sm_90 (H100) here, bf16, no GPU needed")
        emit_json({**out, "results": rows, "hardware": stamp_dict(dtype=out.get("dtype", "fp32"))})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
