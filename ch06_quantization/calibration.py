"""Calibration data and the layer-by-layer driver that GPTQ and AWQ share (book 6.4.1, 6.4.2).

* :func:`calibration_ids`: a few ShareGPT conversations (the workload pool, never the held-out
  evaluation text) tokenized into ``[n, seq_len]`` windows.
* :class:`BlockRunner`: runs ch04's ``LlamaModel`` one decoder block at a time. The calibration
  activations ``X[n, T, hidden]`` enter block 0; each block is quantized, then run (with its new weights)
  to produce the next block's inputs. Only one block's activations and statistics are alive at once,
  which is what lets a 70B model be quantized on one GPU (exercise 6.2).

The driver is tied to ch04's block layout (``input_layernorm``, ``self_attn(x, cos, sin, cache, step)``,
``post_attention_layernorm``, ``mlp``), as the book's code is.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from common.datasets import workload_pool


def calibration_ids(tokenizer, n_samples: int = 16, seq_len: int = 256, seed: int = 0) -> torch.Tensor:
    """``[n_samples, seq_len]`` token ids from ShareGPT conversations long enough to fill a window."""
    if n_samples < 1 or seq_len < 8:
        raise ValueError("calibration needs n_samples >= 1 and seq_len >= 8")
    pool = workload_pool()
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    rows: list[list[int]] = []
    for idx in order:
        conv = pool[idx]
        ids = tokenizer(conv.prompt + "\n\n" + conv.completion, add_special_tokens=False)["input_ids"]
        if len(ids) >= seq_len:
            rows.append(ids[:seq_len])
            if len(rows) == n_samples:
                return torch.tensor(rows, dtype=torch.long)
    raise ValueError(f"only {len(rows)} conversations have {seq_len} tokens; lower --calib-len")


@dataclass
class BlockInputs:
    """What every decoder block needs: hidden states and the rotary tables for their positions."""

    x: torch.Tensor  # [n, T, hidden]
    cos: torch.Tensor  # [1, T, head_dim]
    sin: torch.Tensor  # [1, T, head_dim]


class BlockRunner:
    """Drive ch04's ``LlamaModel`` block by block on calibration data, ``batch`` samples at a time."""

    def __init__(self, model: nn.Module, ids: torch.Tensor, batch: int = 4) -> None:
        self.model = model
        self.batch = batch
        with torch.no_grad():
            x = model.embed_tokens(ids)  # [n, T, hidden]
            positions = torch.arange(ids.shape[1]).unsqueeze(0)  # [1, T]
            cos, sin = model.rotary(positions, x.dtype)
        self.inputs = BlockInputs(x, cos, sin)

    @property
    def num_layers(self) -> int:
        return len(self.model.layers)

    def chunks(self) -> Iterator[torch.Tensor]:
        yield from self.inputs.x.split(self.batch)

    def attn_input(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return block.input_layernorm(x)

    def attention(self, block: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """``self_attn`` on already-normalised ``h[b, T, hidden]`` (no cache: causal over T)."""
        return block.self_attn(h, self.inputs.cos, self.inputs.sin, None, None)

    @torch.no_grad()
    def block_forward(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One decoder block, exactly as ``LlamaModel.forward`` runs it."""
        x = x + self.attention(block, block.input_layernorm(x))
        return x + block.mlp(block.post_attention_layernorm(x))

    @torch.no_grad()
    def run_block(self, i: int) -> None:
        """Replace the stored activations by block ``i``'s outputs (with its current weights)."""
        block = self.model.layers[i]
        self.inputs.x = torch.cat([self.block_forward(block, x) for x in self.chunks()])

    @torch.no_grad()
    def run_all(self, quantize_block: Callable[[int, nn.Module, BlockRunner], None],
                progress: Callable[[int], None] | None = None) -> None:
        """For each block: ``quantize_block(i, block, self)`` then propagate its quantized outputs."""
        for i in range(self.num_layers):
            quantize_block(i, self.model.layers[i], self)
            self.run_block(i)
            if progress:
                progress(i)


class InputCollector:
    """Forward hooks that hand each named linear's input rows ``[tokens, in]`` to a callback."""

    def __init__(self, modules: dict[str, nn.Module], fn: Callable[[str, torch.Tensor], None]) -> None:
        self.handles = [m.register_forward_hook(self._hook(name, fn)) for name, m in modules.items()]

    @staticmethod
    def _hook(name: str, fn: Callable[[str, torch.Tensor], None]):
        def hook(_mod: nn.Module, args: tuple, _out: torch.Tensor) -> None:
            x = args[0]
            fn(name, x.reshape(-1, x.shape[-1]))

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def __enter__(self) -> InputCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def block_linears(block: nn.Module) -> dict[str, nn.Linear]:
    """The block's linears by short name (``self_attn.q_proj``, ..., ``mlp.down_proj``)."""
    return {n: m for n, m in block.named_modules() if isinstance(m, nn.Linear)}
