"""Chapter 6 fixtures: a tiny random ch04 ``LlamaModel`` and calibration ids for it."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def tiny_model(tiny_hf_model):
    """ch04's ``LlamaModel`` loaded from the tiny random HF folder (2 layers, hidden 64)."""
    from ch04_kvcache.model import LlamaModel

    _, folder = tiny_hf_model
    return LlamaModel.from_pretrained(folder)


@pytest.fixture
def tiny_calib() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(3, 256, (4, 32), generator=g)


@pytest.fixture(scope="session")
def vllm_quantized(embedded_model_dir, tmp_path_factory):
    """``{format: ch06_vllm_runs.VLLMRun}`` for every checkpoint format vLLM-CPU can run on this CPU.

    Built and answered once per session (one vLLM process for all of them); formats whose kernel this CPU
    lacks are absent, and the tests that need them skip with ``vllm_cpu_support``'s reason.
    """
    from ch06_vllm_runs import build_checkpoints, run_vllm

    from ch06_quantization.vllm_cpu_support import FORMATS, vllm_cpu_support

    support = {fmt: vllm_cpu_support(fmt) for fmt in FORMATS}
    runnable = [fmt for fmt, s in support.items() if s.runs]
    folders = build_checkpoints(embedded_model_dir, tmp_path_factory.mktemp("vllm-ckpt"), runnable)
    return run_vllm(folders, {fmt: support[fmt].dtype for fmt in runnable})
