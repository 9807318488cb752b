"""Exercise 6.2, plausible but wrong: writes the right sharded checkpoint, but by loading the whole model
and running GPTQ on it in memory, which is exactly what the exercise is about avoiding."""

from __future__ import annotations

import json
import time
from pathlib import Path

from safetensors.torch import save_file

from ch04_kvcache.model import LlamaModel
from ch06_quantization.checkpoints import gptq_tensors, quantization_config
from ch06_quantization.gptq import gptq_quantize_model
from ch06_quantization.rtn import QuantLinear
from ch06_quantization.solutions.ex6_2_layerwise_quantize import LayerwiseReport, memory_plan  # noqa: F401
from common.loader import resolve_model_path


def quantize_layer_by_layer(spec, out_dir, calib_ids, cfg, progress=False):
    t0 = time.perf_counter()
    folder, out = Path(resolve_model_path(spec)), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = LlamaModel.from_pretrained(folder)
    gptq_quantize_model(model, calib_ids, cfg)
    weight_map = {}
    for i, block in enumerate(model.layers):
        tensors = {}
        for name, mod in block.named_modules():
            if isinstance(mod, QuantLinear):
                for k, v in gptq_tensors(mod.quantized_weight()).items():
                    tensors[f"model.layers.{i}.{name}.{k}"] = v.contiguous().clone()
        for name, p in block.named_parameters():
            tensors[f"model.layers.{i}.{name}"] = p.detach().half().contiguous()
        save_file(tensors, str(out / f"layer-{i}.safetensors"))
        weight_map.update(dict.fromkeys(tensors, f"layer-{i}.safetensors"))
    rest = {"model.embed_tokens.weight": model.embed_tokens.weight.detach().half().contiguous(),
            "model.norm.weight": model.norm.weight.detach().half().contiguous()}
    save_file(rest, str(out / "rest.safetensors"))
    weight_map.update(dict.fromkeys(rest, "rest.safetensors"))
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    hf_cfg = json.loads((folder / "config.json").read_text())
    hf_cfg["quantization_config"] = quantization_config("gptq", cfg.spec, cfg.act_order)
    (out / "config.json").write_text(json.dumps(hf_cfg))
    n = len(model.layers)
    return LayerwiseReport(time.perf_counter() - t0, n, 0.0, n + 1)
