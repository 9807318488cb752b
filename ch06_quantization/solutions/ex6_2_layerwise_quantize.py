"""Exercise 6.2 (book 6.4.1, 6.6.1): quantize a model too large for memory, one decoder layer at a time.

Only one decoder block is ever materialised in fp32: its weights are read from the safetensors files by
name, its calibration inputs come from the previous (already quantized) block, GPTQ runs, the packed
tensors go to disk as a shard, and the block is freed. Peak memory is therefore one layer's weights +
its Hessians + the calibration activations + the embedding, not the whole model; :func:`memory_plan`
prints that plan next to the whole-model figure from ch02's calculator.

    python -m ch06_quantization.solutions.ex6_2_layerwise_quantize --out /tmp/q --smoke
    python -m ch06_quantization.solutions.ex6_2_layerwise_quantize --model meta-llama/Meta-Llama-3-70B \
        --out /data/llama3-70b-gptq --group-size 128          # on a machine that holds the files
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ch06_quantization.calibration import BlockRunner
from ch06_quantization.checkpoints import TOKENIZER_FILES, gptq_tensors, quantization_config
from ch06_quantization.gptq import GPTQConfig, gptq_quantize_block
from ch06_quantization.rtn import QuantLinear, QuantSpec
from common.loader import load_config, resolve_model_path


@dataclass
class MemoryPlan:
    whole_model_fp16_gb: float  # what loading the model at once would need
    one_layer_fp32_gb: float
    hessians_gb: float  # fp32, one per distinct linear input of a block
    activations_gb: float  # calibration hidden states (fp32)
    embedding_fp32_gb: float

    @property
    def peak_gb(self) -> float:
        return self.one_layer_fp32_gb + self.hessians_gb + self.activations_gb + self.embedding_fp32_gb


def memory_plan(spec: str, calib_tokens: int) -> MemoryPlan:
    """The layer-by-layer plan, with the whole-model figure from ch02's calculator."""
    from ch02_gpu.memory import Arch, count_params, weights_bytes

    cfg = load_config(spec)
    arch = Arch.from_config(cfg, name=spec)
    params = count_params(arch)
    h, i = arch.hidden_size, arch.intermediate_size
    per_layer = params.linear / arch.num_layers + 2 * h
    return MemoryPlan(
        whole_model_fp16_gb=weights_bytes(params, "fp16") / 1e9,
        one_layer_fp32_gb=per_layer * 4 / 1e9,
        hessians_gb=(3 * h * h + i * i) * 4 / 1e9,  # qkv input, o input, gate/up input (h x h), down (i x i)
        activations_gb=calib_tokens * h * 4 * 2 / 1e9,  # inputs + outputs of the block
        embedding_fp32_gb=arch.vocab_size * h * 4 / 1e9,
    )


class _Reader:
    """Tensors by name from a folder's safetensors files, opened lazily (nothing is loaded up front)."""

    def __init__(self, folder: Path) -> None:
        from safetensors import safe_open

        self.handles = [safe_open(str(f), "pt") for f in sorted(folder.glob("*.safetensors"))]
        self.where = {k: h for h in self.handles for k in h.keys()}  # noqa: SIM118

    def get(self, name: str) -> torch.Tensor:
        return self.where[name].get_tensor(name).float()

    def names(self, prefix: str) -> list[str]:
        return [k for k in self.where if k.startswith(prefix)]


class _Shell(nn.Module):
    """What BlockRunner needs from a model: the embedding, the rotary tables, and the block at hand."""

    def __init__(self, cfg, embed: torch.Tensor) -> None:
        super().__init__()
        from ch04_kvcache.model import Rotary

        self.embed_tokens = nn.Embedding.from_pretrained(embed, freeze=True)
        self.rotary = Rotary(cfg)
        self.layers: list[nn.Module | None] = [None] * cfg.num_layers


@dataclass
class LayerwiseReport:
    seconds: float
    layers: int
    peak_rss_gb: float
    shards: int


def quantize_layer_by_layer(spec: str, out_dir: str | Path, calib_ids: torch.Tensor, cfg: GPTQConfig,
                            progress: bool = False) -> LayerwiseReport:
    """GPTQ every decoder block of ``spec`` streaming from disk; write a sharded GPTQ checkpoint."""
    import psutil
    from safetensors.torch import save_file

    from ch04_kvcache.config import ModelConfig
    from ch04_kvcache.model import Block

    t0 = time.perf_counter()
    folder = Path(resolve_model_path(spec))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mcfg = ModelConfig.from_pretrained(folder)
    rd = _Reader(folder)
    shell = _Shell(mcfg, rd.get("model.embed_tokens.weight"))
    runner = BlockRunner(shell, calib_ids)
    weight_map: dict[str, str] = {}
    peak = 0.0
    for i in range(mcfg.num_layers):
        prefix = f"model.layers.{i}."
        block = Block(mcfg, i)
        block.load_state_dict({k[len(prefix):]: rd.get(k) for k in rd.names(prefix)}, strict=True)
        shell.layers[i] = block
        gptq_quantize_block(block, runner, cfg)
        runner.run_block(i)  # quantized outputs feed the next block
        tensors = {}
        for name, mod in block.named_modules():
            if isinstance(mod, QuantLinear):
                for k, v in gptq_tensors(mod.quantized_weight()).items():
                    tensors[f"{prefix}{name}.{k}"] = v.contiguous().clone()
        for name, p in block.named_parameters():
            tensors[f"{prefix}{name}"] = p.detach().half().contiguous()  # the norms
        shard = f"layer-{i:05d}.safetensors"
        save_file(tensors, str(out / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, shard))
        shell.layers[i] = None  # free the block before reading the next one
        del block, tensors
        peak = max(peak, psutil.Process().memory_info().rss / 1e9)
        if progress:
            print(f"  layer {i + 1}/{mcfg.num_layers} done ({time.perf_counter() - t0:.1f} s, rss {peak:.2f} GB)",
                  flush=True)
    rest = {k: rd.get(k).half() for k in rd.where if not k.startswith("model.layers.")}
    save_file(rest, str(out / "rest.safetensors"), metadata={"format": "pt"})
    weight_map.update(dict.fromkeys(rest, "rest.safetensors"))
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    hf_cfg = json.loads((folder / "config.json").read_text())
    hf_cfg["quantization_config"] = quantization_config("gptq", cfg.spec, cfg.act_order)
    hf_cfg["torch_dtype"] = hf_cfg["dtype"] = "float16"
    (out / "config.json").write_text(json.dumps(hf_cfg, indent=2))
    for f in TOKENIZER_FILES:
        if (folder / f).is_file():
            (out / f).write_bytes((folder / f).read_bytes())
    return LayerwiseReport(time.perf_counter() - t0, mcfg.num_layers, peak, mcfg.num_layers + 1)


def main(argv: list[str] | None = None) -> int:
    from ch06_quantization.calibration import calibration_ids
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.loader import load_tokenizer
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch06_quantization.solutions.ex6_2_layerwise_quantize", __doc__)
    add_common_args(parser)
    parser.add_argument("--out", required=True, help="output folder for the sharded GPTQ checkpoint")
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=64, help="128 for models whose dims it divides")
    parser.add_argument("--calib-samples", type=int, default=16)
    parser.add_argument("--calib-len", type=int, default=256)
    parser.add_argument("--plan-only", action="store_true", help="print the memory plan and stop")
    args = parser.parse_args(argv)
    with friendly_errors():
        n, t = (2, 32) if args.smoke else (args.calib_samples, args.calib_len)
        plan = memory_plan(args.model, n * t)
        if not args.json:
            print_table([{**vars(plan), "peak_gb": plan.peak_gb}], title=f"memory plan for {args.model} "
                        f"({n * t} calibration tokens)", floatfmt=".3g")
        result = {"exercise": "6.2", "plan": {**vars(plan), "peak_gb": plan.peak_gb}}
        if not args.plan_only:
            ids = calibration_ids(load_tokenizer(args.model), n, t, seed=args.seed)
            spec = QuantSpec(args.bits, "group", args.group_size, symmetric=True)
            rep = quantize_layer_by_layer(args.model, args.out, ids, GPTQConfig(spec, act_order=False),
                                          progress=not args.json)
            result["report"] = vars(rep)
            if not args.json:
                print(f"wrote {args.out}: {rep.layers} layers in {rep.seconds:.1f} s, peak RSS {rep.peak_rss_gb:.2f} GB")
        emit_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
