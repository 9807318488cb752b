"""The memory formulas of book section 2.3: weights, KV cache, activations, runtime overhead.

Pure arithmetic on a model's ``config.json`` (no torch, no weights), so Llama-3-70B can be sized on a
laptop. ``python -m ch02_gpu.vram`` is the command-line front end; this module holds the formulas and
the dataclasses they return:

* 2.3.1 weights: parameter count from the architecture x bytes per parameter. INT8/INT4 pay a scale
  (and optionally a zero point) per group of ``group_size`` weights; embeddings, the LM head and norms
  stay in 16-bit, as GPTQ/AWQ checkpoints keep them. MoE counts **all** experts for memory and the
  active ones (``num_experts_per_tok``) for compute.
* 2.3.2 KV cache: ``2 x layers x kv_heads x head_dim x bytes`` per token. Using ``hidden_size`` instead
  of ``kv_heads x head_dim`` ignores grouped-query attention and overstates Llama-3-8B's KV by 4x.
* 2.3.3 activations: the largest set of tensors alive at once during a prefill chunk (one layer's
  hidden states, Q/K/V, the MLP's gate/up/product, the attention scores when the kernel materialises
  them; or the logits at the end), :func:`activation_bytes`.
* 2.3.4 overhead: CUDA context, cuBLAS workspace and allocator slack on a GPU (a constant plus a
  fraction, stated as an assumption); on CPU the interpreter + torch runtime, which the reality check
  measures instead of guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# bits per weight of each storage format; quantised formats also carry per-group scales
WEIGHT_BITS: dict[str, int] = {"fp32": 32, "fp16": 16, "bf16": 16, "fp8": 8, "int8": 8, "int4": 4}
KV_BITS: dict[str, int] = {"fp32": 32, "fp16": 16, "bf16": 16, "fp8": 8, "int8": 8}
GROUPED = {"int8", "int4"}  # formats with a per-group scale (fp8 uses one scale per tensor: negligible)

GiB = 1 << 30
# A GPU process's fixed cost before any tensor (CUDA context, cuBLAS/cuDNN workspaces, NCCL buffers):
# an assumption of ~1 GiB per card (typical nvidia-smi readings for a PyTorch process), plus 5% of the
# dynamic allocations (KV cache, activations) for allocator fragmentation; weights are allocated once. On CPU we measure the runtime instead (see ch02_gpu.reality).
GPU_FIXED_OVERHEAD = 1 * GiB
GPU_FRAGMENTATION = 0.05


class ConfigError(ValueError):
    """The config lacks a number the formulas need; the message names it."""


@dataclass(frozen=True, slots=True)
class Arch:
    """The architecture numbers the formulas need, read from a Hugging Face ``config.json`` dict."""

    name: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    num_experts: int = 1  # MoE: experts per layer (1 = dense)
    experts_per_token: int = 1  # MoE: experts each token is routed to

    def __post_init__(self) -> None:
        for field in ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads",
                      "head_dim", "vocab_size", "num_experts", "experts_per_token"):
            if getattr(self, field) < 1:
                raise ConfigError(f"{field} must be >= 1 in {self.name}'s config")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"{self.name}: num_attention_heads ({self.num_heads}) is not a multiple of "
                              f"num_key_value_heads ({self.num_kv_heads})")
        if self.experts_per_token > self.num_experts:
            raise ConfigError(f"{self.name}: num_experts_per_tok exceeds the number of experts")

    @classmethod
    def from_config(cls, cfg: dict[str, Any], name: str = "model") -> Arch:
        cfg = cfg.get("text_config", cfg)  # multimodal wrappers keep the LM in text_config
        try:
            hidden = int(cfg["hidden_size"])
            heads = int(cfg["num_attention_heads"])
            layers = int(cfg["num_hidden_layers"])
            vocab = int(cfg["vocab_size"])
            inter = int(cfg.get("moe_intermediate_size") or cfg["intermediate_size"])
        except KeyError as exc:
            raise ConfigError(f"{name}'s config has no {exc.args[0]!r}; is it a decoder-only LM config?") from None
        experts = int(cfg.get("num_local_experts") or cfg.get("num_experts") or 1)
        return cls(
            name=name, hidden_size=hidden, intermediate_size=inter, num_layers=layers, num_heads=heads,
            num_kv_heads=int(cfg.get("num_key_value_heads") or heads),  # absent = plain multi-head attention
            head_dim=int(cfg.get("head_dim") or hidden // heads), vocab_size=vocab,
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            attention_bias=bool(cfg.get("attention_bias", False) or cfg.get("model_type") == "qwen2"),
            num_experts=experts,
            experts_per_token=int(cfg.get("num_experts_per_tok") or 1) if experts > 1 else 1,
        )

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1


@dataclass(frozen=True, slots=True)
class ParamCount:
    """Parameters by role. ``linear`` = matrices inside decoder layers (what INT4/INT8 quantise)."""

    embedding: int  # input embedding + untied LM head
    linear: int  # all experts
    linear_active: int  # the experts one token actually uses
    small: int  # norms, biases, routers: kept in 16-bit

    @property
    def total(self) -> int:
        return self.embedding + self.linear + self.small

    @property
    def active(self) -> int:
        return self.embedding + self.linear_active + self.small


def count_params(a: Arch) -> ParamCount:
    """Exact parameter count of a Llama/Mistral/Qwen2/Mixtral-style decoder."""
    q, kv = a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim
    attn = a.hidden_size * (q + 2 * kv) + q * a.hidden_size  # W_q, W_k, W_v, W_o
    expert = 3 * a.hidden_size * a.intermediate_size  # SwiGLU: gate, up, down
    per_layer_small = 2 * a.hidden_size + (q + 2 * kv if a.attention_bias else 0)
    per_layer_small += a.hidden_size * a.num_experts if a.is_moe else 0  # router
    embedding = a.vocab_size * a.hidden_size * (1 if a.tie_word_embeddings else 2)
    return ParamCount(
        embedding=embedding,
        linear=a.num_layers * (attn + a.num_experts * expert),
        linear_active=a.num_layers * (attn + a.experts_per_token * expert),
        small=a.num_layers * per_layer_small + a.hidden_size,  # + the final norm
    )


def bytes_per_weight(fmt: str, group_size: int = 128, zero_point: bool = False) -> float:
    """Average storage bytes of one quantisable weight, scale overhead included (fp16 scales/zeros)."""
    if fmt not in WEIGHT_BITS:
        raise ConfigError(f"unknown weight dtype {fmt!r}; choose one of {', '.join(WEIGHT_BITS)}")
    b = WEIGHT_BITS[fmt] / 8
    if fmt in GROUPED:
        if group_size < 1:
            raise ConfigError("group size must be >= 1")
        b += (2 + (2 if zero_point else 0)) / group_size
    return b


def weights_bytes(p: ParamCount, fmt: str, group_size: int = 128, zero_point: bool = False) -> int:
    """Bytes of all weights. Quantised formats keep embeddings/LM head/norms at 16-bit (fp32 stays fp32)."""
    per_linear = bytes_per_weight(fmt, group_size, zero_point)
    other = 4 if fmt == "fp32" else 2
    return int(math.ceil(p.linear * per_linear + (p.embedding + p.small) * other))


def kv_bytes_per_token(a: Arch, kv_dtype: str) -> int:
    """K and V for one token across all layers: ``2 x layers x kv_heads x head_dim x bytes``."""
    if kv_dtype not in KV_BITS:
        raise ConfigError(f"unknown KV-cache dtype {kv_dtype!r}; choose one of {', '.join(KV_BITS)}")
    return 2 * a.num_layers * a.num_kv_heads * a.head_dim * KV_BITS[kv_dtype] // 8


def kv_bytes_per_token_naive(a: Arch, kv_dtype: str) -> int:
    """The common mistake (2.3.2): ``2 x layers x hidden_size x bytes``, i.e. ignoring GQA/MQA."""
    return 2 * a.num_layers * a.hidden_size * KV_BITS[kv_dtype] // 8


def activation_bytes(a: Arch, batch: int, tokens: int, act_bytes: int, *, logits_tokens: str = "last",
                     materialized_scores: bool = False, tp: int = 1) -> int:
    """Peak bytes of live activations for one forward over ``batch x tokens`` new tokens (per GPU).

    Inside a layer the peak holds the residual stream and its normed copy (2 x (B,T,H)), Q/K/V
    (B,T,(nh+2nkv)hd) and the MLP's gate, up and their product (3 x (B,T,I)); with
    ``materialized_scores`` (eager attention) also the (B,nh,T,T) score matrix. At the end the logits
    (B,T_logits,V) exist beside the hidden states: ``logits_tokens='last'`` is what serving engines do
    (one row per sequence), ``'all'`` what a plain ``transformers`` forward does. Head- and
    intermediate-sized tensors are split across ``tp`` GPUs.
    """
    if logits_tokens not in ("last", "all"):
        raise ConfigError("logits_tokens must be 'last' or 'all'")
    n = batch * tokens
    experts = a.experts_per_token if a.is_moe else 1
    sharded = (a.num_heads + 2 * a.num_kv_heads) * a.head_dim + 3 * a.intermediate_size * experts
    layer = n * (2 * a.hidden_size + sharded / tp)
    if materialized_scores:
        layer += batch * a.num_heads / tp * tokens * tokens
    logit_rows = n if logits_tokens == "all" else batch
    head = n * a.hidden_size + logit_rows * a.vocab_size / tp
    return int(math.ceil(max(layer, head) * act_bytes))


def gpu_overhead_bytes(dynamic_bytes: float) -> int:
    """Runtime overhead on one GPU: the fixed context plus fragmentation slack on the dynamic
    allocations (KV cache, activations): an assumption, 2.3.4."""
    return int(GPU_FIXED_OVERHEAD + GPU_FRAGMENTATION * max(0.0, dynamic_bytes))
