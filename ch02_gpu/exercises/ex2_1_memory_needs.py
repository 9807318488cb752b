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
    raise NotImplementedError("exercise 2.1: count the parameters and the KV bytes (book 2.3.1, 2.3.2)")


def compare_models(configs: dict[str, dict[str, Any]], bytes_per_param: float = 2, kv_bytes: int = 2,
                   batch: int = 1, context: int = 4096) -> list[dict[str, Any]]:
    """One row per model (``{"model": name, **memory_needs(...)}``), sorted by total bytes, smallest first."""
    raise NotImplementedError("exercise 2.1: call memory_needs for each config and sort the rows")
