"""Compressed-tensors checkpoints (book 6.6.1): the on-disk format llm-compressor writes and vLLM and
``transformers`` (through the ``compressed-tensors`` package) read, for two schemes:

* **W4A16** -- ``format: "pack-quantized"``: per quantized linear ``<prefix>.weight_packed [out, in/8]``
  int32 (8 nibbles per word packed along the *input* dim, column ``8r + i`` in bits ``4i..4i+3`` of word
  ``r``; each nibble is the signed value plus 8, i.e. exactly our unsigned ``q``), ``weight_scale
  [out, G]`` in the model dtype, ``weight_shape [2]`` int64 (``[out, in]``), and, when asymmetric,
  ``weight_zero_point [out/8, G]`` int32 packed along the *output* dim (again signed + 8 = our ``z``).
  Group strategy with ``group_size`` 64 on this model (128 does not divide 576); ``channel`` has G = 1.
* **W8A8** -- ``format: "int-quantized"`` (``"naive-quantized"`` is read too): ``<prefix>.weight [out, in]``
  int8 (signed, symmetric per output channel), ``weight_scale [out, 1]``; the activations are quantized
  at run time to int8 with one scale per token (``input_activations: {strategy: token, dynamic: true}``),
  so nothing about them is stored. :class:`DynamicInt8Linear` is our reference for that arithmetic.

``config.json`` gets ``quantization_config = {quant_method: "compressed-tensors", format, config_groups:
{group_0: {targets: ["Linear"], weights: {...}, input_activations: ...}}, ignore: ["lm_head"],
quantization_status: "compressed"}`` with the keys compressed-tensors 0.17 serialises. Group-wise
act-order (``actorder: "group"`` with ``weight_g_idx``) exists in the format, but vLLM 0.32 refuses it,
so an act-order model is refused here with that reason (write it as GPTQ instead).

Who loads what (measured 2026-11-25, vLLM 0.32 CPU build on an AVX2-only AMD EPYC): W8A8 loads and
generates (``CPUInt8ScaledMMLinearKernel``, a oneDNN int8 GEMM that ``_C_AVX2`` has too); our loader
predicts 84% of its greedy tokens, not all of them, because that GEMM on a CPU without VNNI is not exact
for large int8 activations (1.4% relative error on block 0's q_proj; exact for |x| <= 8), while our
float emulation matches exact integer math to 2e-7. W4A16 loads, then its first forward fails: its
kernel (``CPUWNA16LinearKernel`` -> ``cpu_gemm_wna16``) is compiled into ``_C_AVX512`` only. vLLM-GPU
runs both (Marlin/Machete for W4A16, CUTLASS int8 for W8A8, per vLLM's kernel tables, not run here).
``transformers`` 5.19 + compressed-tensors 0.17 load both on CPU: W4A16 gives our logits exactly; W8A8 gives
them once our activation scale is ``absmax / 127.5`` (compressed-tensors' fake-quant) instead of vLLM's
``absmax / 127``. tests/ch06/test_compressed_tensors.py holds these measurements.

Run ``python -m ch06_quantization.checkpoints --smoke --out DIR --format ct-w4a16`` (or ``ct-w8a8``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import nn

from ch06_quantization.checkpoints import (
    TOKENIZER_FILES,
    CheckpointError,
    finish_quantized,
    open_quantized,
    pack_rows,
    unpack_rows,
)
from ch06_quantization.rtn import (
    QuantizedWeight,
    QuantLinear,
    QuantSpec,
    decoder_linears,
    quantize_rtn,
    set_module,
)
from common.loader import resolve_model_path

CT_METHOD = "compressed-tensors"
PACK_FORMAT, INT_FORMAT = "pack-quantized", "int-quantized"
READ_FORMATS = (PACK_FORMAT, INT_FORMAT, "naive-quantized")
W8A8_SPEC = QuantSpec(8, "channel", symmetric=True)
DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def dynamic_int8_per_token(x: torch.Tensor, divisor: float = 127.0) -> torch.Tensor:
    """Fake-quantize activations ``x[..., in]`` to int8 with one symmetric scale per token (row):
    ``scale = absmax / divisor``. vLLM's kernels use 127; compressed-tensors' own fake-quant (what
    ``transformers`` runs) uses 255 / 2 = 127.5, so the largest value clips to 127."""
    scale = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-8) / divisor  # [..., 1]
    return torch.clamp(torch.round(x / scale), -128, 127) * scale


class DynamicInt8Linear(QuantLinear):
    """W8A8: int8 per-channel symmetric weights (stored as in :class:`QuantLinear`) and int8 activations
    with a scale per token computed at run time -- what vLLM's compressed-tensors W8A8 scheme computes
    with an int8 GEMM (``int32 accumulate * s_x * s_w``); here emulated in float. ``act_divisor`` = 127.5
    reproduces ``transformers``' compressed-tensors forward instead."""

    act_divisor: float = 127.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [..., in] -> [..., out]
        return super().forward(dynamic_int8_per_token(x, self.act_divisor))


def quantize_model_w8a8(model: nn.Module) -> nn.Module:
    """Replace every decoder linear by a :class:`DynamicInt8Linear` (RTN int8 per channel; in place)."""
    for name, lin in decoder_linears(model).items():
        set_module(model, name, DynamicInt8Linear(quantize_rtn(lin.weight, W8A8_SPEC), lin.bias))
    return model


def _check_writable(qw: QuantizedWeight, w8a8: bool) -> None:
    spec = qw.spec
    if qw.g_idx is not None and not torch.equal(qw.g_idx.long(), torch.arange(qw.q.shape[1]) // spec.group_size):
        raise CheckpointError("act-order (g_idx) checkpoints use actorder='group', which vLLM 0.32 rejects for "
                              "compressed-tensors: quantize without act-order or write --format gptq")
    if w8a8 and spec != W8A8_SPEC:
        raise CheckpointError(f"W8A8 needs 8-bit per-channel symmetric weights, not {spec.label()}")
    if not w8a8 and (spec.granularity == "tensor" or 32 % spec.bits):
        raise CheckpointError(f"pack-quantized holds 2/4/8-bit group or per-channel weights, not {spec.label()}")


def pack_quantized_tensors(qw: QuantizedWeight, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """W4A16 (any 2/4/8-bit weight-only) tensors of one linear, names without the module prefix."""
    out_f, in_f = qw.q.shape
    t = {"weight_packed": pack_rows(qw.q.T, qw.spec.bits).T.contiguous(),  # [in/k, out] -> [out, in/k]
         "weight_scale": qw.scales.to(dtype).contiguous(),  # [out, G]
         "weight_shape": torch.tensor([out_f, in_f], dtype=torch.int64)}
    if not qw.spec.symmetric:
        t["weight_zero_point"] = pack_rows(qw.zeros.long(), qw.spec.bits)  # [out, G] -> [out/k, G]
    return t


def int_quantized_tensors(qw: QuantizedWeight, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """W8A8 tensors: signed int8 weights and a scale per output channel."""
    return {"weight": (qw.q.to(torch.int16) - 128).to(torch.int8),  # [out, in]
            "weight_scale": qw.scales.to(dtype).reshape(-1, 1).contiguous()}  # [out, 1]


def _args(spec: QuantSpec, strategy: str, dynamic: bool = False) -> dict:
    """One ``QuantizationArgs`` as compressed-tensors serialises it."""
    return {"num_bits": spec.bits, "type": "int", "symmetric": spec.symmetric,
            "group_size": spec.group_size if strategy == "group" else None, "strategy": strategy,
            "block_structure": None, "dynamic": dynamic, "actorder": None, "scale_dtype": None,
            "zp_dtype": None if spec.symmetric else "torch.int8",
            "observer": None if dynamic else "memoryless_minmax", "observer_kwargs": {}}


def ct_quantization_config(spec: QuantSpec, w8a8: bool) -> dict:
    """``quantization_config`` for W8A8 (``w8a8``) or weight-only (W4A16 and friends)."""
    group = {"targets": ["Linear"], "weights": _args(spec, spec.granularity),
             "input_activations": _args(QuantSpec(8, "channel", symmetric=True), "token", dynamic=True)
             if w8a8 else None, "output_activations": None, "format": None}
    return {"config_groups": {"group_0": group}, "quant_method": CT_METHOD, "kv_cache_scheme": None,
            "format": INT_FORMAT if w8a8 else PACK_FORMAT, "quantization_status": "compressed",
            "global_compression_ratio": None, "ignore": ["lm_head"]}


def save_compressed_tensors(model: nn.Module, out_dir: str | Path, source: str | None = None,
                            dtype: torch.dtype = torch.float32) -> Path:
    """Write ch04's quantized ``LlamaModel`` as a compressed-tensors HF folder: W8A8 when its linears are
    :class:`DynamicInt8Linear`, else weight-only pack-quantized (W4A16). ``dtype`` is the shipping dtype
    of everything unquantized and of the scales (fp32 keeps our reload bit-exact; bf16 rounds the scales)."""
    from safetensors.torch import save_file

    quantized = {n: m for n, m in model.named_modules() if isinstance(m, QuantLinear)}
    if not quantized:
        raise CheckpointError("the model has no QuantLinear layers: quantize it first")
    kinds = {isinstance(m, DynamicInt8Linear) for m in quantized.values()}
    specs = {m.spec for m in quantized.values()}
    if len(kinds) != 1 or len(specs) != 1:
        raise CheckpointError(f"one quantization scheme per checkpoint, found {len(specs)} specs")
    w8a8 = kinds.pop()
    tensors: dict[str, torch.Tensor] = {}
    for name, mod in quantized.items():
        qw = mod.quantized_weight()
        _check_writable(qw, w8a8)
        layer = int_quantized_tensors(qw, dtype) if w8a8 else pack_quantized_tensors(qw, dtype)
        tensors.update({f"model.{name}.{k}": v for k, v in layer.items()})
        if mod.bias is not None:
            tensors[f"model.{name}.bias"] = mod.bias.to(dtype)
    tied = getattr(model.config, "tie_word_embeddings", False)
    for name, t in model.state_dict().items():  # embeddings, norms (AWQ's folded scales live here), head
        if name.rsplit(".", 1)[0] in quantized or "inv_freq" in name or (tied and name == "lm_head.weight"):
            continue
        tensors[name if name.startswith("lm_head") else f"model.{name}"] = t.to(dtype).contiguous()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    src = Path(resolve_model_path(source))
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"] = ct_quantization_config(specs.pop(), w8a8)
    cfg["num_hidden_layers"] = len(model.layers)  # a truncated (--smoke) model stays loadable
    cfg["torch_dtype"] = cfg["dtype"] = DTYPE_NAMES[dtype]
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    for f in TOKENIZER_FILES:
        if (src / f).is_file():
            shutil.copy(src / f, out / f)
    return out


def spec_from_config(qc: dict) -> tuple[QuantSpec, bool]:
    """(weight spec, W8A8?) from a compressed-tensors ``quantization_config``; refuses what we cannot read."""
    fmt = qc.get("format")
    groups = list((qc.get("config_groups") or {}).values())
    if fmt not in READ_FORMATS or len(groups) != 1 or not groups[0].get("weights"):
        raise CheckpointError(f"only single-group compressed-tensors checkpoints in {READ_FORMATS} are read here "
                              f"(format={fmt!r}, {len(groups)} config groups)")
    w, act = groups[0]["weights"], groups[0].get("input_activations")
    if w.get("type", "int") != "int" or w["strategy"] not in ("group", "channel") or w.get("actorder"):
        raise CheckpointError(f"unsupported weight quantization {w}")
    spec = QuantSpec(w["num_bits"], w["strategy"], w.get("group_size") or 128, w.get("symmetric", True))
    w8a8 = act is not None
    if w8a8 and not (act.get("dynamic") and act.get("strategy") == "token" and act.get("num_bits") == 8):
        raise CheckpointError(f"only dynamic per-token int8 activations are emulated here, not {act}")
    return spec, w8a8


def read_layer(get, prefix: str, keys: set[str], spec: QuantSpec) -> QuantizedWeight:
    """One linear's :class:`QuantizedWeight` from either layout (``get(name) -> tensor``)."""
    scales = get(f"{prefix}.weight_scale").float()  # [out, G]
    if f"{prefix}.weight_packed" in keys:
        out_f, in_f = (int(v) for v in get(f"{prefix}.weight_shape"))
        q = unpack_rows(get(f"{prefix}.weight_packed").T.contiguous(), spec.bits).T[:out_f, :in_f]  # [out, in]
    else:
        q = get(f"{prefix}.weight").to(torch.int16) + (1 << (spec.bits - 1))  # signed -> our unsigned
    if spec.symmetric:
        zeros = torch.full_like(scales, float(1 << (spec.bits - 1)))
    else:
        zeros = unpack_rows(get(f"{prefix}.weight_zero_point"), spec.bits)[: scales.shape[0]].float()  # [out, G]
    return QuantizedWeight(q.to(torch.uint8).contiguous(), scales, zeros, spec)


def load_compressed_tensors(folder: str | Path) -> nn.Module:
    """Our loader: a compressed-tensors folder -> ch04's ``LlamaModel`` with :class:`QuantLinear` (W4A16)
    or :class:`DynamicInt8Linear` (W8A8) layers, fp32 compute."""
    folder = Path(folder)
    cfg_dict = json.loads((folder / "config.json").read_text())
    spec, w8a8 = spec_from_config(cfg_dict.get("quantization_config") or {})
    cfg, model, get, keys = open_quantized(folder, cfg_dict)
    layer_cls = DynamicInt8Linear if w8a8 else QuantLinear
    done: set[str] = set()
    for name, lin in [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]:
        prefix = f"model.{name}"
        if f"{prefix}.weight_scale" not in keys:
            continue
        qw = read_layer(get, prefix, keys, spec)
        if qw.q.shape != (lin.out_features, lin.in_features):
            raise CheckpointError(f"{prefix}: weight shape {tuple(qw.q.shape)} does not match the model")
        bias = get(f"{prefix}.bias").float() if f"{prefix}.bias" in keys else None
        set_module(model, name, layer_cls(qw, bias, scale_dtype=torch.float32))  # keep bf16/fp32 scales exact
        done.add(prefix)
    return finish_quantized(model, cfg, get, [k for k in keys if k.rsplit(".", 1)[0] not in done])
