"""A.1: the frameworks compared, run or cited. Cited rows are facts from each project's documentation,
labelled as such and never given a measured number."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Framework:
    name: str
    section: str
    how: str        # how appendix_a.compare runs it, or "cited, not run"
    core_idea: str
    hardware: str
    source: str


RUN = (
    Framework("our engine (ch05)", "A.1 (this book)", "in-process, continuous batching, paged KV, ch04's C++ decode operator",
              "the book's chapters 4-5 rebuilt from scratch", "CPU, CUDA GPUs", "this repository"),
    Framework("vLLM-CPU", "A.1.1", ".venv-vllm, offline LLM.generate, eager, same max_num_seqs",
              "PagedAttention, continuous batching, prefix caching, chunked prefill",
              "NVIDIA/AMD GPUs, x86/ARM CPUs, TPUs", "Kwon et al., SOSP 2023, arXiv:2309.06180; https://docs.vllm.ai"),
    Framework("transformers", "A.1 (baseline)", "in-process, generate() in left-padded static batches",
              "the reference implementation: one batch runs until its longest member ends", "anything torch runs on",
              "https://huggingface.co/docs/transformers"),
    Framework("llama.cpp", "A.1 (CPU reference)", "llama-cpp-python (make llama-cpp), F32 GGUF, one request at a time",
              "plain C/C++ kernels, GGUF weights", "CPUs, Apple Metal, CUDA, Vulkan", "https://github.com/ggml-org/llama.cpp"),
)

CITED = (
    Framework("Text Generation Inference (TGI)", "A.1.2", "cited, not run (GPU-oriented server; no CPU path here)",
              "Rust router + Python model server, continuous batching", "NVIDIA/AMD GPUs, Intel Gaudi, others",
              "https://huggingface.co/docs/text-generation-inference"),
    Framework("TensorRT-LLM", "A.1.3", "cited, not run (NVIDIA GPUs only)",
              "ahead-of-time compiled engines with fused kernels, in-flight batching, FP8/INT4", "NVIDIA GPUs only",
              "https://nvidia.github.io/TensorRT-LLM"),
)

# A.1.4 / A.1.5: the choice in one line each (documentation-based, not measured here).
ADVICE = (
    ("A.1.4 TensorRT-LLM vs vLLM", "TensorRT-LLM compiles per GPU model and precision for the last kernels' worth of "
     "speed on NVIDIA hardware; vLLM runs the same flags on GPUs and CPUs and loads Hugging Face checkpoints directly."),
    ("A.1.5 choose", "one NVIDIA fleet, fixed models, every millisecond counts: TensorRT-LLM; mixed hardware or "
     "frequent model changes: vLLM; a CPU or a laptop: llama.cpp; learning how it works: this repository's engine."),
)
