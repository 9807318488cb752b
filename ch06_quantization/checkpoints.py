"""Checkpoints that real engines load (book 6.6.1): GPTQ and AWQ (GEMM) on-disk formats, and our loader.

Both formats store, per quantized linear ``model.layers.N.<proj>``, int32 words packing ``32 / bits``
values, fp16 scales per group, packed zero points, and a ``quantization_config`` in ``config.json``:

* GPTQ (AutoGPTQ "v1", what ``transformers``/optimum and vLLM read): ``qweight [in/8, out]`` packed
  along the *input* dim, ``qzeros [G, out/8]`` holding ``zero - 1`` (a historical off-by-one: a zero of
  0 wraps to 15, which kernels that do not mask misread -- symmetric checkpoints store 7 and are safe),
  ``scales [G, out]`` fp16, ``g_idx [in]`` (group of each input column; act-order makes it unsorted).
* AWQ GEMM: ``qweight [in, out/8]`` packed along the *output* dim in the interleaved order
  ``0 2 4 6 1 3 5 7``, ``qzeros [G, out/8]`` the same way (no offset), ``scales [G, out]`` fp16; the
  norm weights carry the folded AWQ scales, so they are saved too.

Everything that is not quantized is saved as well (fp32 by default so our reload is bit-exact; pass
``dtype=torch.float16`` to ship), plus the tokenizer. :func:`load_quantized` rebuilds ch04's
``LlamaModel`` with :class:`~ch06_quantization.rtn.QuantLinear` layers from either format.

Who loads what (vLLM 0.32; ARCHITECTURE.md §5 for the CPU column):
vLLM-CPU: GPTQ 4-bit *symmetric* (8-bit and asymmetric are rejected), AWQ GEMM, compressed-tensors
W4A16/W8A8; weight dims must be multiples of 32 and the group size even. Measured here: on a CPU with
AVX2 only the checkpoint loads but the first forward fails (``cpu_gemm_wna16`` exists only in vLLM's
``_C_AVX512`` build), so the ``vllm`` test skips there with that reason; with AVX-512 it loads and runs
in bf16 (its kernel takes no fp32 activations; ``vllm_cpu_support.py`` decides from the flags). vLLM-GPU: GPTQ 4/8-bit sym and
asym (Marlin/ExLlama kernels), AWQ (Marlin), compressed-tensors. ``transformers``: GPTQ through
gptqmodel/optimum and AWQ through autoawq -- GPU kernels; neither installs here.

compressed-tensors (``fmt="compressed-tensors"``, written and read by ``compressed_tensors_format.py``; the
CLI's ``--format ct-w4a16`` / ``ct-w8a8``): W4A16 ``pack-quantized`` hits the same ``cpu_gemm_wna16`` wall on
AVX2; W8A8 ``int-quantized`` runs on vLLM-CPU here (oneDNN int8 GEMM, built into ``_C_AVX2`` too), though
without VNNI that GEMM saturates for large activations, so its tokens agree with ours only mostly (README).

Run ``python -m ch06_quantization.checkpoints --smoke --out /tmp/ckpt [--format awq]`` to write and reload one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ch06_quantization.rtn import QuantizedWeight, QuantLinear, QuantSpec, set_module
from common.cli import UsageError
from common.loader import resolve_model_path

if TYPE_CHECKING:
    from ch04_kvcache.config import ModelConfig

TensorGetter = Callable[[str], torch.Tensor]  # a checkpoint tensor by its key
QUANT_BUFFERS = ("qweight", "scales", "qzeros", "g_idx", "bias")  # QuantLinear's buffers: not in the float state
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # nibble i of a word holds output column order[i]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                   "chat_template.jinja")


class CheckpointError(UsageError):
    """The model cannot be written in the requested format; the message says why."""


def _to_int32(words: torch.Tensor) -> torch.Tensor:
    """int64 words holding 32-bit patterns -> int32 with the same bits."""
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def pack_rows(v: torch.Tensor, bits: int, order: tuple[int, ...] | None = None) -> torch.Tensor:
    """Pack ``v[N, M]`` along dim 0: word ``r`` holds ``v[r*k + i]`` at bit ``bits*i`` (k = 32/bits)."""
    k = 32 // bits
    v = v.to(torch.int64).reshape(-1, k, v.shape[-1])  # [N/k, k, M]
    if order is not None:
        v = v[:, list(order)]
    shifts = (torch.arange(k, dtype=torch.int64) * bits)[None, :, None]
    return _to_int32((v << shifts).sum(dim=1))


def unpack_rows(words: torch.Tensor, bits: int, order: tuple[int, ...] | None = None) -> torch.Tensor:
    """Inverse of :func:`pack_rows`: ``[N/k, M]`` int32 -> ``[N, M]`` int64."""
    k = 32 // bits
    w = words.to(torch.int64) & 0xFFFFFFFF
    vals = (w[:, None, :] >> (torch.arange(k, dtype=torch.int64) * bits)[None, :, None]) & ((1 << bits) - 1)
    if order is not None:
        vals = vals[:, torch.argsort(torch.tensor(order))]
    return vals.reshape(-1, words.shape[-1])


def _full_params(qw: QuantizedWeight) -> tuple[torch.Tensor, torch.Tensor]:
    """Scales/zeros as ``[G, out]`` (per-channel -> G = 1)."""
    out_f = qw.q.shape[0]
    s, z = qw.scales, qw.zeros
    if s.shape[0] == 1 and out_f > 1:
        s, z = s.expand(out_f, -1), z.expand(out_f, -1)
    return s.T.contiguous(), z.T.contiguous()


def gptq_tensors(qw: QuantizedWeight) -> dict[str, torch.Tensor]:
    bits = qw.spec.bits
    if bits not in (2, 4, 8):
        raise CheckpointError(f"GPTQ format packs 2, 4 or 8 bits here, not {bits}")
    out_f, in_f = qw.q.shape
    s, z = _full_params(qw)
    g_idx = qw.g_idx if qw.g_idx is not None else torch.arange(in_f) // (in_f // s.shape[0])
    return {"qweight": pack_rows(qw.q.T, bits),  # [in/k, out]
            "qzeros": pack_rows(((z.long() - 1) & qw.spec.maxq).T, bits).T.contiguous(),  # [G, out/k]
            "scales": s.half(), "g_idx": g_idx.to(torch.int32)}


def awq_tensors(qw: QuantizedWeight) -> dict[str, torch.Tensor]:
    if qw.spec.bits != 4 or qw.g_idx is not None:
        raise CheckpointError("AWQ GEMM format holds 4-bit weights with consecutive groups (no act-order)")
    s, z = _full_params(qw)
    return {"qweight": pack_rows(qw.q.long(), 4, AWQ_ORDER).T.contiguous(),  # [out/8, in] -> [in, out/8]
            "qzeros": pack_rows(z.long().T, 4, AWQ_ORDER).T.contiguous(),  # [G, out/8]
            "scales": s.half()}


def quantization_config(fmt: str, spec: QuantSpec, act_order: bool) -> dict:
    gs = spec.group_size if spec.granularity == "group" else -1
    if fmt == "gptq":
        return {"quant_method": "gptq", "bits": spec.bits, "group_size": gs, "desc_act": act_order,
                "sym": spec.symmetric, "checkpoint_format": "gptq", "damp_percent": 0.01,
                "true_sequential": False, "static_groups": False}
    return {"quant_method": "awq", "bits": spec.bits, "group_size": gs, "zero_point": not spec.symmetric,
            "version": "gemm"}


def save_quantized(model: nn.Module, out_dir: str | Path, fmt: str, source: str | None = None,
                   dtype: torch.dtype = torch.float32) -> Path:
    """Write ch04's quantized ``LlamaModel`` as a HF folder in ``fmt`` ("gptq", "awq" or "compressed-tensors")."""
    from safetensors.torch import save_file

    if fmt == "compressed-tensors":  # W4A16 / W8A8: compressed_tensors_format.py
        from ch06_quantization.compressed_tensors_format import save_compressed_tensors

        return save_compressed_tensors(model, out_dir, source, dtype)
    if fmt not in ("gptq", "awq"):
        raise CheckpointError(f"format must be 'gptq', 'awq' or 'compressed-tensors', not {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    specs = set()
    act_order = False
    quantized = {n: m for n, m in model.named_modules() if isinstance(m, QuantLinear)}
    if not quantized:
        raise CheckpointError("the model has no QuantLinear layers: quantize it first")
    for name, mod in quantized.items():
        qw = mod.quantized_weight()
        specs.add(qw.spec)
        act_order |= qw.g_idx is not None and not torch.equal(qw.g_idx.sort().values, qw.g_idx)
        for k, v in (gptq_tensors(qw) if fmt == "gptq" else awq_tensors(qw)).items():
            tensors[f"model.{name}.{k}"] = v.contiguous().clone()  # fused qkv share g_idx: own copies
        if mod.bias is not None:
            tensors[f"model.{name}.bias"] = mod.bias.to(dtype)
    if len(specs) != 1:
        raise CheckpointError(f"one quantization spec per checkpoint, found {len(specs)}")
    tied = getattr(model.config, "tie_word_embeddings", False)
    for name, t in model.state_dict().items():
        owner = name.rsplit(".", 1)[0]
        if owner in quantized or "inv_freq" in name or (tied and name == "lm_head.weight"):
            continue
        key = name if name.startswith("lm_head") else f"model.{name}"
        tensors[key] = t.to(dtype).contiguous()
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    src = Path(resolve_model_path(source))
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"] = quantization_config(fmt, specs.pop(), act_order)
    cfg["num_hidden_layers"] = len(model.layers)  # a truncated (--smoke) model stays loadable
    cfg["torch_dtype"] = cfg["dtype"] = {torch.float32: "float32", torch.float16: "float16",
                                         torch.bfloat16: "bfloat16"}[dtype]
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    for f in TOKENIZER_FILES:
        if (src / f).is_file():
            shutil.copy(src / f, out / f)
    return out


def _read_quantized_weight(get, prefix: str, fmt: str, spec: QuantSpec, out_f: int, in_f: int) -> QuantizedWeight:
    scales = get(f"{prefix}.scales").float()  # [G, out]
    if fmt == "gptq":
        q = unpack_rows(get(f"{prefix}.qweight"), spec.bits).T  # [out, in]
        zeros = (unpack_rows(get(f"{prefix}.qzeros").T, spec.bits).T + 1) & spec.maxq  # [G, out]
        g_idx = get(f"{prefix}.g_idx").to(torch.int32)
        default = torch.arange(in_f) // (in_f // scales.shape[0])
        g_idx = None if torch.equal(g_idx.long(), default) else g_idx
    else:
        q = unpack_rows(get(f"{prefix}.qweight").T, 4, AWQ_ORDER)  # [out, in]
        zeros = unpack_rows(get(f"{prefix}.qzeros").T, 4, AWQ_ORDER).T  # [G, out]
        g_idx = None
    assert q.shape == (out_f, in_f), (prefix, q.shape)
    return QuantizedWeight(q.to(torch.uint8), scales.T.contiguous(), zeros.T.float().contiguous(), spec, g_idx)


def open_quantized(folder: Path, cfg_dict: dict) -> tuple[ModelConfig, nn.Module, TensorGetter, set[str]]:
    """The start of every quantized loader: ch04's ``LlamaModel`` for ``cfg_dict`` on the meta device, and the
    tensors of the folder's ``*.safetensors`` (one file, or shards: exercise 6.2 writes one per layer), read
    lazily: ``(cfg, model, get, keys)``."""
    from safetensors import safe_open

    from ch04_kvcache.config import ModelConfig
    from ch04_kvcache.model import LlamaModel

    cfg = ModelConfig.from_dict(cfg_dict)
    with torch.device("meta"):
        model = LlamaModel(cfg)
    handles = [safe_open(str(f), "pt") for f in sorted(folder.glob("*.safetensors"))]
    where = {k: h for h in handles for k in h.keys()}  # noqa: SIM118 - safe_open is not a dict

    def get(k: str) -> torch.Tensor:
        return where[k].get_tensor(k)

    return cfg, model, get, set(where)


def finish_quantized(model: nn.Module, cfg: ModelConfig, get: TensorGetter, float_keys: Iterable[str]) -> nn.Module:
    """The end of every quantized loader: ``model`` (from :func:`open_quantized`, its quantized layers already
    swapped in) gets the float tensors ``float_keys`` as fp32, tied embeddings and RoPE frequencies; anything
    else missing or unexpected raises :class:`CheckpointError`."""
    from ch04_kvcache.model import rope_inv_freq

    state = {k.removeprefix("model."): get(k).float() for k in float_keys}
    if cfg.tie_word_embeddings:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    bad = [k for k in missing if not k.endswith(QUANT_BUFFERS)]
    if bad or unexpected:
        raise CheckpointError(f"checkpoint does not match the model: missing {bad[:3]}, unexpected {unexpected[:3]}")
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    model.rotary.inv_freq = rope_inv_freq(cfg)
    return model.eval()


def load_quantized(folder: str | Path) -> nn.Module:
    """Our loader: a GPTQ, AWQ or compressed-tensors folder -> ch04's ``LlamaModel`` with ``QuantLinear`` layers
    (fp32 compute)."""
    folder = Path(folder)
    cfg_dict = json.loads((folder / "config.json").read_text())
    qc = cfg_dict.get("quantization_config") or {}
    fmt = qc.get("quant_method")
    if fmt == "compressed-tensors":
        from ch06_quantization.compressed_tensors_format import load_compressed_tensors

        return load_compressed_tensors(folder)
    if fmt not in ("gptq", "awq"):
        raise CheckpointError(f"{folder} is not a GPTQ/AWQ checkpoint (quant_method={fmt!r})")
    gs = qc["group_size"]
    sym = qc.get("sym", True) if fmt == "gptq" else not qc.get("zero_point", True)
    spec = QuantSpec(qc["bits"], "group" if gs > 0 else "channel", gs if gs > 0 else 128, sym)
    cfg, model, get, keys = open_quantized(folder, cfg_dict)
    for name, lin in [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]:
        prefix = f"model.{name}"
        if f"{prefix}.qweight" in keys:
            qw = _read_quantized_weight(get, prefix, fmt, spec, lin.out_features, lin.in_features)
            bias = get(f"{prefix}.bias").float() if f"{prefix}.bias" in keys else None
            set_module(model, name, QuantLinear(qw, bias))
    float_keys = [k for k in keys if not k.endswith((".qweight", ".qzeros", ".scales", ".g_idx"))]
    return finish_quantized(model, cfg, get, float_keys)


def main(argv: list[str] | None = None) -> int:
    import time

    from ch06_quantization.awq import AWQConfig, awq_quantize_model
    from ch06_quantization.calibration import calibration_ids
    from ch06_quantization.compare import truncate
    from ch06_quantization.evaluate import load_model
    from ch06_quantization.gptq import GPTQConfig, gptq_quantize_model
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.loader import load_tokenizer
    from common.report import emit_json

    parser = make_parser("python -m ch06_quantization.checkpoints", __doc__)
    add_common_args(parser)
    parser.add_argument("--format", choices=("gptq", "awq", "ct-w4a16", "ct-w8a8"), default="gptq",
                        help="ct-*: compressed-tensors (W4A16 = 4-bit sym GPTQ weights; W8A8 = int8 per-channel RTN "
                        "weights + dynamic per-token int8 activations)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--group-size", type=int, default=64)
    args = parser.parse_args(argv)
    with friendly_errors():
        if Path(args.out).exists() and any(Path(args.out).iterdir()):
            raise UsageError(f"{args.out} is not empty; choose a new --out folder")
        t0 = time.perf_counter()
        model = truncate(load_model(args.model), 2 if args.smoke else None)
        ids = calibration_ids(load_tokenizer(args.model), 2 if args.smoke else 16, 64 if args.smoke else 256)
        if args.format == "ct-w8a8":
            from ch06_quantization.compressed_tensors_format import quantize_model_w8a8

            quantize_model_w8a8(model)
        elif args.format in ("gptq", "ct-w4a16"):  # 4-bit sym, no act-order: what vLLM-CPU (AVX-512) and GPUs take
            gptq_quantize_model(model, ids, GPTQConfig(QuantSpec(4, "group", args.group_size, symmetric=True),
                                                       act_order=False))
        else:
            awq_quantize_model(model, ids, AWQConfig(QuantSpec(4, "group", args.group_size), n_grid=4 if args.smoke
                                                     else 20))
        fmt = "compressed-tensors" if args.format.startswith("ct-") else args.format
        out = save_quantized(model, args.out, fmt, source=args.model)
        reloaded = load_quantized(out)
        probe = torch.tensor([ids[0, :32].tolist()])
        with torch.no_grad():
            diff = float((reloaded(probe) - model(probe)).abs().max())
        size = sum(f.stat().st_size for f in out.glob("*.safetensors"))
        if not args.json:
            print(f"wrote {out} ({size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s; our loader's logits differ "
                  f"from the in-memory model by {diff:.3g} (max abs)")
        emit_json({"benchmark": "ch06.checkpoints", "format": args.format, "bytes": size, "max_abs_diff": diff,
                   "smoke": args.smoke})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
