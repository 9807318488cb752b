"""Arithmetic intensity and roofline bounds of prefill and decode (book sections 2.2.4, 2.5.1).

A step of the model does ``flops`` of arithmetic and must move ``bytes`` through memory. On a device
with ``peak`` FLOP/s and ``bandwidth`` bytes/s it cannot take less than ``max(flops/peak,
bytes/bandwidth)``: the roofline. The ratio ``flops/bytes`` (FLOP per byte, the arithmetic intensity)
against the device's ridge point ``peak/bandwidth`` says which roof applies. Decode at batch 1 reads
every weight to produce one token per sequence (intensity ~1 FLOP/byte in 16-bit), far left of any
GPU's ridge (~100-300): memory-bound. Batching raises the FLOPs per weight read; prefill of T tokens
reuses each weight T times: compute-bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from ch02_gpu.memory import Arch, bytes_per_weight, count_params, kv_bytes_per_token


@dataclass(frozen=True, slots=True)
class StepCost:
    """Work of one forward step over ``batch`` sequences."""

    phase: str  # "prefill" | "decode"
    batch: int
    new_tokens: int  # per sequence in this step
    context: int  # tokens per sequence attended over (after the step)
    flops: float
    bytes: float
    weight_bytes: float  # the part of ``bytes`` that is weights

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes

    def time_bound(self, peak_flops: float, bandwidth: float) -> float:
        """Lower bound on seconds for this step (the roofline)."""
        return max(self.flops / peak_flops, self.bytes / bandwidth)

    def tokens_per_s_bound(self, peak_flops: float, bandwidth: float) -> float:
        return self.batch * self.new_tokens / self.time_bound(peak_flops, bandwidth)

    def bound_kind(self, peak_flops: float, bandwidth: float) -> str:
        return "memory" if self.intensity < peak_flops / bandwidth else "compute"


def expected_experts(num_experts: int, per_token: int, tokens: int) -> float:
    """Distinct experts a layer touches for ``tokens`` tokens with uniform routing: MoE decode reads
    only these, so its bytes per step grow with the batch until all experts are read."""
    if num_experts <= 1:
        return 1.0
    return num_experts * (1 - (1 - per_token / num_experts) ** tokens)


def step_cost(a: Arch, batch: int, new_tokens: int, context: int, weight_dtype: str = "bf16",
              kv_dtype: str | None = None) -> StepCost:
    """FLOPs and bytes of one step: ``new_tokens`` per sequence (1 = decode) with ``context`` tokens
    per sequence attended over. Matmul FLOPs = 2 x (active linear params + LM head) per token, plus
    attention's 4 x layers x heads x head_dim per (query, key) pair; bytes = the weights read once (the
    experts actually touched) + KV read + KV written."""
    if batch < 1 or new_tokens < 1 or context < new_tokens:
        raise ValueError("need batch >= 1, new_tokens >= 1 and context >= new_tokens")
    kv_dtype = kv_dtype or (weight_dtype if weight_dtype in ("fp32", "fp16", "bf16") else "bf16")
    p = count_params(a)
    n = batch * new_tokens
    head = a.vocab_size * a.hidden_size  # the LM head (the tied embedding matrix when tied)
    pairs = batch * (new_tokens * context - new_tokens * (new_tokens - 1) / 2)  # causal (query, key) pairs
    flops = 2 * (p.linear_active + head) * n + 4 * a.num_layers * a.num_heads * a.head_dim * pairs
    expert_params = 3 * a.hidden_size * a.intermediate_size * a.num_layers
    attn_params = p.linear - a.num_experts * expert_params
    touched = expected_experts(a.num_experts, a.experts_per_token, n)
    linear_read = attn_params + touched * expert_params
    act = 4 if weight_dtype == "fp32" else 2
    w_bytes = linear_read * bytes_per_weight(weight_dtype) + (head + p.small) * act
    kv = kv_bytes_per_token(a, kv_dtype)
    kv_bytes = batch * (context - new_tokens) * kv + n * kv  # read the past, write the new
    return StepCost("decode" if new_tokens == 1 else "prefill", batch, new_tokens, context, flops,
                    w_bytes + kv_bytes, w_bytes)
