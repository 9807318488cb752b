"""B.3.2-B.3.4: the checklist items this appendix adds, each a small function over plain values.

The hardware layer (B.3.1) and several software/configuration items already exist in chapters 2-4 and
the doctor; :mod:`appendix_b.checklist` reuses them and adds these. Every non-OK item carries its fix and
names the troubleshooting entry (``appendix_b.entries``) it prevents.
"""

from __future__ import annotations

from common.checklist import FAIL, OK, WARN, Check

DEBUG_ENV = ("CUDA_LAUNCH_BLOCKING", "PYTORCH_NO_CUDA_MEMORY_CACHING", "TORCH_COMPILE_DEBUG",
             "TORCH_SHOW_CPP_STACKTRACES")
SIMD_RANK = {"scalar": 0, "avx2": 1, "avx512": 2}


# ------------------------------------------------------------------------------- B.3.2 software


def check_torch_build(version: str, cuda_build: str | None, gpus: int) -> Check:
    if gpus and cuda_build is None:
        return Check("torch-build", FAIL, f"torch {version} is a CPU build on a machine with {gpus} GPU(s)",
                     "install a CUDA build of torch (entry no-cuda).")
    kind = f"CUDA {cuda_build}" if cuda_build else "CPU"
    return Check("torch-build", OK, f"torch {version}, {kind} build")


def check_min_version(name: str, version: str | None, minimum: tuple[int, ...]) -> Check:
    want = ".".join(map(str, minimum))
    if version is None:
        return Check(name, FAIL, "not installed", f"pip install '{name}>={want}' (make setup installs it).")
    try:
        have = tuple(int(p) for p in version.split("+")[0].split(".")[:len(minimum)])
    except ValueError:
        return Check(name, WARN, f"version {version!r} is not numeric", f"install a release, {name}>={want}.")
    if have < minimum:
        return Check(name, FAIL, f"{version} < {want}", f"pip install -U '{name}>={want}'.")
    return Check(name, OK, f"{version} (>= {want})")


def check_compiler(problem: str | None) -> Check:
    if problem:
        return Check("c++", WARN, f"the C++ operators cannot be built: {problem}",
                     "install a C++ compiler (apt-get install g++); until then the torch paths run (slower).")
    return Check("c++", OK, "a C++ toolchain builds the chapter kernels")


def check_debug_env(env: dict[str, str]) -> Check:
    on = [k for k in DEBUG_ENV if env.get(k, "") not in ("", "0")]
    if on:
        return Check("debug-env", WARN, f"debug settings on: {', '.join(on)}",
                     "unset them outside debugging: they serialize kernels or disable caches (everything slower).")
    return Check("debug-env", OK, "no debug settings in the environment")


# ------------------------------------------------------------------------------- B.3.3 configuration


def check_omp_wait(policy: str | None, serving: bool) -> Check:
    if not serving:
        return Check("omp-wait", OK, f"OMP_WAIT_POLICY={policy or 'unset'} (offline use)")
    if (policy or "").upper() != "PASSIVE":
        return Check("omp-wait", WARN, f"a server with OMP_WAIT_POLICY={policy or 'unset'}: OpenMP workers spin",
                     "start the server with OMP_WAIT_POLICY=PASSIVE (entry omp-busy-wait).")
    return Check("omp-wait", OK, "OMP_WAIT_POLICY=PASSIVE for a server")


def check_simd(native: str, override: str | None) -> Check:
    if override and SIMD_RANK.get(override, 0) < SIMD_RANK.get(native, 0):
        return Check("simd", WARN, f"LLMIC_SIMD={override} on a CPU that runs {native}",
                     "unset LLMIC_SIMD unless you are testing the fallback: the kernels run a slower path.")
    if native == "scalar":
        return Check("simd", WARN, "no AVX2/AVX-512: the C++ kernels run scalar loops",
                     "expect several times slower decode; a newer CPU or a GPU helps.")
    return Check("simd", OK, f"kernels built for {override or native}")


# ------------------------------------------------------------------------------- B.3.4 application


def check_max_tokens(max_tokens: int | None, max_model_len: int) -> Check:
    if max_tokens is None:
        return Check("max-tokens", WARN, f"no max_tokens: a request may generate up to {max_model_len} tokens",
                     "set max_tokens per request: it bounds latency, cost and the KV cache each request reserves.")
    return Check("max-tokens", OK, f"max_tokens {max_tokens}")


def check_prompt_fits(prompt_tokens: int, max_tokens: int | None, max_model_len: int) -> Check:
    need = prompt_tokens + (max_tokens or 0)
    detail = f"prompt {prompt_tokens} + max_tokens {max_tokens or 0} = {need} of max_model_len {max_model_len}"
    if prompt_tokens >= max_model_len:
        return Check("prompt-fits", FAIL, detail, "truncate or summarize the prompt, or raise max_model_len "
                     "(entry context-too-long).")
    if need > max_model_len:
        return Check("prompt-fits", WARN, detail, "the answer will be cut at the context end: lower max_tokens.")
    return Check("prompt-fits", OK, detail)


def check_concurrency(concurrency: int, max_num_seqs: int) -> Check:
    detail = f"{concurrency} request(s) in flight for max_num_seqs {max_num_seqs}"
    if concurrency <= 1:
        return Check("concurrency", WARN, detail, "the engine batches only requests that are in flight together: "
                     "send them concurrently (async client, a pool) to get batched throughput.")
    if concurrency > 4 * max_num_seqs:
        return Check("concurrency", WARN, detail, "most requests wait in the queue (TTFT grows): add replicas or "
                     "raise max_num_seqs if the KV budget allows.")
    return Check("concurrency", OK, detail)


def check_streaming(stream: bool, interactive: bool) -> Check:
    if interactive and not stream:
        return Check("streaming", WARN, "an interactive client without streaming waits for the whole answer",
                     "request stream=true: the user sees the first token after TTFT instead of the end-to-end time.")
    return Check("streaming", OK, f"stream={'on' if stream else 'off'} ({'interactive' if interactive else 'batch'})")
