"""Exercise 6.2 (book 6.4.1, 6.6.1): quantize a model too large for memory, one decoder layer at a time.

Task: implement :func:`memory_plan` and :func:`quantize_layer_by_layer`. Never build the whole model:
read each decoder block's weights by name from the safetensors files (``safetensors.safe_open``), feed it
the calibration hidden states produced by the previous (already quantized) block
(``ch06_quantization.calibration.BlockRunner``), quantize it with
``ch06_quantization.gptq.gptq_quantize_block``, write its packed GPTQ tensors
(``ch06_quantization.checkpoints.gptq_tensors``) to one shard per layer plus a
``model.safetensors.index.json``, and free it. The result must load with
``ch06_quantization.checkpoints.load_quantized``. The plan compares the whole model's fp16 bytes (ch02's
calculator) with one layer + Hessians + activations + embedding. Grade with ``python -m common.grade 6.2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ch06_quantization.gptq import GPTQConfig


@dataclass
class MemoryPlan:
    whole_model_fp16_gb: float
    one_layer_fp32_gb: float
    hessians_gb: float
    activations_gb: float
    embedding_fp32_gb: float

    @property
    def peak_gb(self) -> float:
        return self.one_layer_fp32_gb + self.hessians_gb + self.activations_gb + self.embedding_fp32_gb


@dataclass
class LayerwiseReport:
    seconds: float
    layers: int
    peak_rss_gb: float
    shards: int


def memory_plan(spec: str, calib_tokens: int) -> MemoryPlan:
    raise NotImplementedError("exercise 6.2: the layer-by-layer memory plan")


def quantize_layer_by_layer(spec: str, out_dir: str | Path, calib_ids: torch.Tensor, cfg: GPTQConfig,
                            progress: bool = False) -> LayerwiseReport:
    raise NotImplementedError("exercise 6.2: stream, quantize and write one block at a time")
