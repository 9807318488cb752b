"""One memory estimate and the solver questions of book section 2.3 (2.3.5, 2.3.6 worked examples).

:func:`estimate` turns an architecture and a :class:`MemoryRequest` into a :class:`MemoryEstimate`
(weights, KV per token and total, activations at the prefill chunk, overhead, total, per GPU). The
solvers answer what a reader asks next: the largest batch at a context (:func:`max_batch`), the longest
context at a batch (:func:`max_context`), which cards fit (:func:`fitting_gpus`), and how many KV blocks
vLLM would allocate (:func:`vllm_kv_capacity`). ``python -m ch02_gpu.vram`` prints all of them.

Conventions: every ``*_bytes`` field of an estimate is the whole deployment (all ``tp`` GPUs together),
``per_gpu_bytes`` is what one card must hold. With tensor parallelism each GPU keeps
``ceil(kv_heads / tp)`` KV heads (replicated when ``tp > kv_heads``) and 1/tp of the weights.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ch02_gpu.gpus import GPU, load_gpus
from ch02_gpu.memory import (
    KV_BITS,
    Arch,
    ConfigError,
    GiB,
    activation_bytes,
    count_params,
    gpu_overhead_bytes,
    kv_bytes_per_token,
    kv_bytes_per_token_naive,
    weights_bytes,
)

VLLM_CPU_BLOCK_SIZE = 128  # vLLM's CPU backend
VLLM_GPU_BLOCK_SIZE = 16


@dataclass(frozen=True, slots=True)
class MemoryRequest:
    """What the reader wants to run. ``kv_dtype=None`` means: same as the weights when those are
    16/32-bit, else bf16 (weight-only quantisation leaves the KV cache at 16-bit)."""

    weight_dtype: str = "bf16"
    kv_dtype: str | None = None
    batch: int = 1
    context: int = 4096
    prefill_chunk: int = 2048  # tokens per forward step (vLLM's max_num_batched_tokens)
    tp: int = 1
    group_size: int = 128
    zero_point: bool = False
    logits_tokens: str = "last"
    materialized_scores: bool = False

    def __post_init__(self) -> None:
        for name in ("batch", "context", "prefill_chunk", "tp", "group_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1")

    @property
    def resolved_kv_dtype(self) -> str:
        if self.kv_dtype:
            return self.kv_dtype
        return self.weight_dtype if self.weight_dtype in ("fp32", "fp16", "bf16") else "bf16"

    @property
    def act_bytes(self) -> int:
        return 4 if self.weight_dtype == "fp32" else 2


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    model: str
    params: int
    active_params: int
    weights_bytes: int
    kv_bytes_per_token: int
    kv_cache_bytes: int
    activation_bytes: int
    overhead_bytes: int
    total_bytes: int
    per_gpu_bytes: int
    tensor_parallel: int
    naive_kv_bytes_per_token: int  # the hidden_size mistake, for comparison

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)


def kv_bytes_per_token_per_gpu(a: Arch, kv_dtype: str, tp: int) -> int:
    heads = math.ceil(a.num_kv_heads / tp)
    return 2 * a.num_layers * heads * a.head_dim * KV_BITS[kv_dtype] // 8


def _components(a: Arch, r: MemoryRequest, batch: int, context: int) -> tuple[int, int, int, int]:
    """Per-GPU (weights, kv, activations, overhead) for one batch/context."""
    w = weights_bytes(count_params(a), r.weight_dtype, r.group_size, r.zero_point) // r.tp
    kv = kv_bytes_per_token_per_gpu(a, r.resolved_kv_dtype, r.tp) * batch * context
    chunk = min(r.prefill_chunk, batch * context)
    act = activation_bytes(a, 1, chunk, r.act_bytes, logits_tokens=r.logits_tokens,
                           materialized_scores=r.materialized_scores, tp=r.tp)
    if r.logits_tokens == "last":  # one logits row per sequence in the step, not one per chunk
        act = max(act, (chunk * a.hidden_size + min(batch, chunk) * a.vocab_size // r.tp) * r.act_bytes)
    return w, kv, act, gpu_overhead_bytes(kv + act)


def per_gpu_bytes(a: Arch, r: MemoryRequest, batch: int | None = None, context: int | None = None) -> int:
    return sum(_components(a, r, batch or r.batch, context or r.context))


def estimate(a: Arch, r: MemoryRequest) -> MemoryEstimate:
    p = count_params(a)
    w_gpu, kv_gpu, act, over = _components(a, r, r.batch, r.context)
    w_total = weights_bytes(p, r.weight_dtype, r.group_size, r.zero_point)
    kv_total = kv_gpu * r.tp
    total = w_total + kv_total + (act + over) * r.tp
    return MemoryEstimate(
        model=a.name, params=p.total, active_params=p.active, weights_bytes=w_total,
        kv_bytes_per_token=kv_bytes_per_token(a, r.resolved_kv_dtype), kv_cache_bytes=kv_total,
        activation_bytes=act * r.tp, overhead_bytes=over * r.tp, total_bytes=total,
        per_gpu_bytes=w_gpu + kv_gpu + act + over, tensor_parallel=r.tp,
        naive_kv_bytes_per_token=kv_bytes_per_token_naive(a, r.resolved_kv_dtype),
    )


def _largest(ok, hi: int) -> int:
    """Largest n in [0, hi] with ok(n) true, for a monotone ok (ok(0) is assumed true)."""
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def max_batch(a: Arch, r: MemoryRequest, capacity_bytes: float, limit: int = 1 << 20) -> int:
    """Most sequences of ``r.context`` tokens whose memory fits in ``capacity_bytes`` per GPU (0: none)."""
    return _largest(lambda b: b == 0 or per_gpu_bytes(a, r, batch=b) <= capacity_bytes, limit)


def max_context(a: Arch, r: MemoryRequest, capacity_bytes: float, limit: int = 1 << 24) -> int:
    """Longest context (tokens per sequence) at ``r.batch`` that fits in ``capacity_bytes`` per GPU."""
    return _largest(lambda c: c == 0 or per_gpu_bytes(a, r, context=c) <= capacity_bytes, limit)


@dataclass(frozen=True, slots=True)
class Fit:
    gpu: str
    memory_gb: float
    needed_gb: float
    fits: bool
    max_batch: int


def fitting_gpus(a: Arch, r: MemoryRequest, utilization: float = 0.9,
                 gpus: list[GPU] | None = None) -> list[Fit]:
    """Every card in the table: does the request fit in ``utilization`` of its memory, and how many
    sequences of ``r.context`` tokens would."""
    need = per_gpu_bytes(a, r)
    out = []
    for g in gpus if gpus is not None else load_gpus():
        cap = g.memory_bytes * utilization
        out.append(Fit(g.name, g.memory_gb, need / 1e9, need <= cap, max_batch(a, r, cap)))
    return out


@dataclass(frozen=True, slots=True)
class KVCapacity:
    """What vLLM would allocate: ``num_blocks`` blocks of ``block_size`` tokens."""

    num_blocks: int
    block_size: int
    bytes_per_block: int  # per GPU
    kv_space_bytes: float

    @property
    def tokens(self) -> int:
        return self.num_blocks * self.block_size


def vllm_cpu_kv_capacity(a: Arch, kv_dtype: str, kv_cache_space_gib: int,
                         block_size: int = VLLM_CPU_BLOCK_SIZE) -> KVCapacity:
    """vLLM-CPU reserves ``VLLM_CPU_KVCACHE_SPACE`` whole GiB for KV and cuts it into blocks."""
    if kv_cache_space_gib < 1:
        raise ConfigError("VLLM_CPU_KVCACHE_SPACE is a whole number of GiB >= 1")
    per_block = kv_bytes_per_token(a, kv_dtype) * block_size
    space = kv_cache_space_gib * GiB
    return KVCapacity(int(space // per_block), block_size, per_block, space)


def vllm_gpu_kv_capacity(a: Arch, r: MemoryRequest, gpu_memory_bytes: float, utilization: float = 0.9,
                         block_size: int = VLLM_GPU_BLOCK_SIZE) -> KVCapacity:
    """vLLM on a GPU: ``total x gpu_memory_utilization`` minus weights, the profiled activation peak and
    non-torch memory (CUDA context; our ~1 GiB assumption), cut into blocks of ``block_size`` tokens."""
    if not 0 < utilization <= 1:
        raise ConfigError("gpu-memory-utilization must be in (0, 1]")
    w, _, act, _ = _components(a, r, 1, r.prefill_chunk)  # vLLM profiles one max-size batch of tokens
    space = max(0.0, gpu_memory_bytes * utilization - w - act - GiB)
    per_block = kv_bytes_per_token_per_gpu(a, r.resolved_kv_dtype, r.tp) * block_size
    return KVCapacity(int(space // per_block), block_size, per_block, space)
