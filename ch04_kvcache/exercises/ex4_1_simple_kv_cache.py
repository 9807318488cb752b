"""Exercise 4.1 (book 4.1, 4.3.1): a simple KV cache for the chapter's model.

Task: write ``SimpleKVCache``, the simplest cache that works: per layer, keep K and V of every token seen
so far and grow them with ``torch.cat`` as new tokens arrive (no preallocation). The model calls:

* ``cache.length``: tokens cached so far (read before the step to number the new positions);
* ``cache.check_room(new_len)``: may raise if ``new_len`` tokens would not fit (never, here);
* ``cache.update(layer, k, v, step)`` with ``k, v`` of shape (B, kv_heads, T, head_dim): store them after
  the layer's cached K/V and return the full K and V (B, kv_heads, length + T, head_dim);
* ``cache.advance(step)``: after the last layer, the cache holds ``step.kv_len`` tokens.

Then write ``generate_with_simple_cache(model, prompt_ids, max_new_tokens)``: greedy decoding that runs the
prompt once, then feeds one token per step with the cache, returning the new token ids. Its tokens must
equal the no-cache loop's. Grade: ``python -m common.grade 4.1``.
"""

from __future__ import annotations

import torch


class SimpleKVCache:
    """K/V per layer, grown by concatenation."""

    def __init__(self, num_layers: int) -> None:
        self.length = 0
        raise NotImplementedError("exercise 4.1: keep a K and a V slot per layer")

    def check_room(self, new_len: int) -> None:
        """No fixed capacity: concatenation grows as needed."""

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, step) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError("exercise 4.1: append k, v along the token axis and return the full K, V")

    def advance(self, step) -> None:
        raise NotImplementedError("exercise 4.1: the cache now holds step.kv_len tokens")


def generate_with_simple_cache(model, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """Greedy tokens after ``prompt_ids``, using :class:`SimpleKVCache`."""
    raise NotImplementedError("exercise 4.1: prefill the prompt, then decode one token per step")
