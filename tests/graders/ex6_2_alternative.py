"""Exercise 6.2, a different correct answer: streams one block at a time like the reference but lays the
checkpoint out as ``model-0000i-of-0000N.safetensors``, one per layer, with the embedding in the first
shard and the final norm in the last (no extra shard), and reads tensors through one ``safe_open`` per
lookup instead of keeping handles."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ch04_kvcache.config import ModelConfig
from ch04_kvcache.model import Block, Rotary
from ch06_quantization.calibration import BlockRunner
from ch06_quantization.checkpoints import gptq_tensors, quantization_config
from ch06_quantization.gptq import gptq_quantize_block
from ch06_quantization.rtn import QuantLinear
from ch06_quantization.solutions.ex6_2_layerwise_quantize import LayerwiseReport, memory_plan  # noqa: F401
from common.loader import resolve_model_path


def _index(folder: Path) -> dict[str, Path]:
    where = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            where.update(dict.fromkeys(h.keys(), f))
    return where


def _read(where: dict[str, Path], name: str) -> torch.Tensor:
    with safe_open(str(where[name]), "pt") as h:
        return h.get_tensor(name).float()


class _Model(nn.Module):
    def __init__(self, cfg: ModelConfig, embed: torch.Tensor) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding.from_pretrained(embed, freeze=True)
        self.rotary = Rotary(cfg)
        self.layers = [None] * cfg.num_layers


def quantize_layer_by_layer(spec, out_dir, calib_ids, cfg, progress=False):
    t0 = time.perf_counter()
    folder, out = Path(resolve_model_path(spec)), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mcfg = ModelConfig.from_pretrained(folder)
    where = _index(folder)
    embed = _read(where, "model.embed_tokens.weight")
    shell = _Model(mcfg, embed)
    runner = BlockRunner(shell, calib_ids)
    n, weight_map = mcfg.num_layers, {}
    for i in range(n):
        prefix = f"model.layers.{i}."
        shell.layers[i] = Block(mcfg, i)
        shell.layers[i].load_state_dict({k[len(prefix):]: _read(where, k) for k in where if k.startswith(prefix)})
        gptq_quantize_block(shell.layers[i], runner, cfg)
        runner.run_block(i)
        tensors = {f"{prefix}{name}": p.detach().half().contiguous()
                   for name, p in shell.layers[i].named_parameters()}
        for name, m in shell.layers[i].named_modules():
            if isinstance(m, QuantLinear):
                tensors.update({f"{prefix}{name}.{k}": v.contiguous().clone()
                                for k, v in gptq_tensors(m.quantized_weight()).items()})
        if i == 0:
            tensors["model.embed_tokens.weight"] = embed.half()
        if i == n - 1:
            tensors["model.norm.weight"] = _read(where, "model.norm.weight").half()
        shard = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        save_file(tensors, str(out / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, shard))
        shell.layers[i] = None
    (out / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    hf_cfg = json.loads((folder / "config.json").read_text())
    hf_cfg["quantization_config"] = quantization_config("gptq", cfg.spec, cfg.act_order)
    (out / "config.json").write_text(json.dumps(hf_cfg))
    return LayerwiseReport(time.perf_counter() - t0, n, 0.0, n)
