"""Edge deployment (book 9.6): export the embedded model to ONNX, run it with onnxruntime fp32 and int8.

    python -m ch09_advanced.edge              # export (cached), quantise, compare size and tokens/s
    python -m ch09_advanced.edge --smoke

The export is the no-cache forward at a fixed shape: ``input_ids (1, T) -> logits (1, T, V)``. Tokens/s
here is prefill throughput (T tokens per forward), the same work for torch and onnxruntime. Dynamic
int8 (``onnxruntime.quantization.quantize_dynamic``) stores MatMul weights as int8 and quantises
activations per call. The standard CPU/edge path is GGUF + llama.cpp (ch06's ``gguf_llama_cpp.py``: the embedded
model ships as a GGUF, rewritten there as F32, Q8_0 or Q4_0 and run by llama.cpp when installed); mobile
runtimes (ExecuTorch, MLC, llama.cpp on Android/iOS) take the same export-then-quantise route.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import torch
from torch import nn

from common.bench import stamp_dict, time_fn
from common.cli import (
    UsageError,
    add_common_args,
    friendly_errors,
    make_parser,
    positive_int,
    seed_everything,
)
from common.paths import cache_dir
from common.report import emit_json, print_table

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


class LogitsOnly(nn.Module):
    """The ch04 model's no-cache forward with explicit positions (exporters dislike optional arguments)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)  # (1, T, V)


def export(model: nn.Module, seq_len: int, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.zeros(1, seq_len, dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(LogitsOnly(model).eval(), (ids,), str(path), input_names=["input_ids"],
                          output_names=["logits"], dynamo=True, external_data=False)
    return path


def quantize_int8(src: Path, dst: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return dst


def file_mb(path: Path) -> float:
    files = [path, *path.parent.glob(path.name + ".data")]
    return sum(f.stat().st_size for f in files if f.exists()) / 1e6


def run(smoke: bool = False, seq_len: int = 64) -> dict:
    if not HAS_ORT:
        raise UsageError("onnx/onnxruntime are not installed: pip install -e '.[edge]'.")
    import onnxruntime as ort

    from ch04_kvcache.model import LlamaModel

    model = LlamaModel.from_pretrained("smollm2-135m").eval()
    t = 16 if smoke else seq_len
    folder = cache_dir() / "onnx" / "ch09"
    fp32 = folder / f"smollm2-t{t}.onnx"
    t0 = time.perf_counter()
    if not fp32.exists():
        export(model, t, fp32)
    export_s = time.perf_counter() - t0
    int8 = folder / f"smollm2-t{t}-int8.onnx"
    if not int8.exists():
        quantize_int8(fp32, int8)
    ids = torch.randint(0, model.config.vocab_size, (1, t))
    feed = {"input_ids": ids.numpy()}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    sessions = {name: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
                for name, p in (("onnx fp32", fp32), ("onnx int8", int8))}
    reps = 2 if smoke else 5
    with torch.no_grad():
        ref = model(ids)
        timings = {"torch fp32": time_fn(lambda: model(ids), repeats=reps)}
    rows = [{"runtime": "torch fp32", "size MB": sum(p.numel() * 4 for p in model.parameters()) / 1e6,
             "tok/s": t / timings["torch fp32"].median, "max |logit diff|": 0.0, "argmax agree": 1.0}]
    for name, sess in sessions.items():
        out = torch.from_numpy(sess.run(None, feed)[0])
        tm = time_fn(lambda s=sess: s.run(None, feed), repeats=reps)
        rows.append({"runtime": name, "size MB": file_mb(fp32 if "fp32" in name else int8), "tok/s": t / tm.median,
                     "max |logit diff|": float((out - ref).abs().max()),
                     "argmax agree": float((out.argmax(-1) == ref.argmax(-1)).float().mean())})
    by = {r["runtime"]: r for r in rows}
    return {"_rows": rows, "seq_len": t, "export_or_load_s": export_s,
            "onnx_fp32_vs_torch_fp32_tok_s": by["onnx fp32"]["tok/s"] / by["torch fp32"]["tok/s"],
            "onnx_int8_vs_torch_fp32_tok_s": by["onnx int8"]["tok/s"] / by["torch fp32"]["tok/s"],
            "onnx_int8_size_ratio": by["onnx int8"]["size MB"] / by["onnx fp32"]["size MB"],
            "onnx_int8_argmax_agree": by["onnx int8"]["argmax agree"],
            "onnx_fp32_max_abs_diff": by["onnx fp32"]["max |logit diff|"],
            "llama_cpp_installed": importlib.util.find_spec("llama_cpp") is not None,
            "hardware": stamp_dict(dtype="fp32")}


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch09_advanced.edge", __doc__)
    add_common_args(parser, model=False)
    parser.add_argument("--seq-len", type=positive_int, default=64, help="fixed export length T")
    args = parser.parse_args(argv)
    with friendly_errors():
        seed_everything(args.seed)
        out = run(args.smoke, args.seq_len)
        rows = out.pop("_rows")
        if not args.json:
            print_table(rows, title=f"SmolLM2-135M forward, T={out['seq_len']}, CPU")
        emit_json(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
