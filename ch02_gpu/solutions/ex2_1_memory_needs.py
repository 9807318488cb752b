"""Exercise 2.1 (book section 2.3, 动手练习 练习2.1): compute the memory needs of several models.

Given a Hugging Face ``config.json`` dict of a Llama-family model (dense or MoE), compute from scratch:

* ``params``: the parameter count (embedding, untied LM head, per layer Q/K/V/O, SwiGLU MLP of every
  expert, router, biases if ``attention_bias``, norms);
* ``weights_bytes`` = params x ``bytes_per_param``;
* ``kv_bytes_per_token`` = 2 x layers x kv_heads x head_dim x ``kv_bytes`` (GQA-aware: not hidden_size);
* ``kv_cache_bytes`` for ``batch`` sequences of ``context`` tokens, and ``total_bytes`` = weights + KV.

Check yourself: Llama-3-8B in bf16 has 8,030,261,248 parameters and 131,072 KV bytes per token.
Grade: ``make grade EX=2.1``.
"""

from __future__ import annotations

from typing import Any


def memory_needs(config: dict[str, Any], bytes_per_param: float = 2, kv_bytes: int = 2, batch: int = 1,
                 context: int = 4096) -> dict[str, int]:
    """Memory of one model: keys params, weights_bytes, kv_bytes_per_token, kv_cache_bytes, total_bytes."""
    h = config["hidden_size"]
    layers = config["num_hidden_layers"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or h // heads
    experts = config.get("num_local_experts") or 1
    q, kv = heads * head_dim, kv_heads * head_dim
    attention = h * q + 2 * h * kv + q * h  # W_q, W_k, W_v, W_o
    mlp = experts * 3 * h * config["intermediate_size"]  # gate, up, down per expert
    router = h * experts if experts > 1 else 0
    bias = q + 2 * kv if config.get("attention_bias") or config.get("model_type") == "qwen2" else 0
    per_layer = attention + mlp + router + bias + 2 * h  # two RMSNorms
    embeddings = config["vocab_size"] * h * (1 if config.get("tie_word_embeddings") else 2)
    params = embeddings + layers * per_layer + h  # + final norm
    kv_per_token = 2 * layers * kv_heads * head_dim * kv_bytes
    weights = int(params * bytes_per_param)
    kv_cache = kv_per_token * batch * context
    return {"params": params, "weights_bytes": weights, "kv_bytes_per_token": kv_per_token,
            "kv_cache_bytes": kv_cache, "total_bytes": weights + kv_cache}


def compare_models(configs: dict[str, dict[str, Any]], bytes_per_param: float = 2, kv_bytes: int = 2,
                   batch: int = 1, context: int = 4096) -> list[dict[str, Any]]:
    """One row per model (``{"model": name, **memory_needs(...)}``), sorted by total bytes, smallest first."""
    rows = [{"model": name, **memory_needs(cfg, bytes_per_param, kv_bytes, batch, context)}
            for name, cfg in configs.items()]
    return sorted(rows, key=lambda r: r["total_bytes"])
