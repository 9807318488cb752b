"""Chapter 3's 常见误区 (common pitfalls), each measured on this machine with this chapter's code.

1. "pip install torch gives me the GPU": the torch here (its CUDA build, what ``torch.cuda`` says, what
   a ``device="cuda"`` tensor raises) and the doctor's verdict (``doctor.check_cuda_compat``) for the
   three cases of 3.7.1: a CPU wheel on a GPU machine, a wheel built for a newer CUDA than the driver, a
   match. The first two are the silent and the loud way the GPU goes unused.
2. "More threads = faster": one SmolLM2 MLP matmul (64 tokens x 576 -> 1536) with torch's intra-op
   threads at 1, the cores this process may use, and 4x that; then again while one other process keeps
   a core busy (a neighbour job, as on a shared box). Threads beyond the free cores wait on each other.
3. "The model is loaded in bf16": ``common.loader.load_hf_model`` (transformers ``from_pretrained``)
   with its default dtype (fp32) and with bf16: parameter bytes, and what the
   same dtype choice does to vLLM-CPU's KV cache (``ch02_gpu.estimate.vllm_cpu_kv_capacity``, 1 GiB).

    python -m ch03_env.pitfalls --smoke
    python -m ch03_env.pitfalls
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import statistics
import sys
import time

import torch

from ch02_gpu.estimate import vllm_cpu_kv_capacity
from ch02_gpu.memory import Arch
from ch03_env.doctor import check_cuda_compat, probe_nvml
from common.loader import EMBEDDED, load_config, load_hf_model, resolve_model_path
from common.pitfalls import Pitfall, pitfalls_main

CH = "ch03"


def cuda_pitfall() -> Pitfall:
    driver_cuda, gpus = probe_nvml()
    try:
        torch.zeros(1, device="cuda")
        cuda_error = "none"
    except Exception as exc:  # noqa: BLE001 - the error a CPU wheel gives is the measurement
        cuda_error = f"{type(exc).__name__}: {exc}"
    cases = {"cpu_wheel_on_gpu_box": check_cuda_compat(None, "12.8"),
             "cu128_wheel_driver_12_2": check_cuda_compat("12.8", "12.2"),
             "cu128_wheel_driver_12_8": check_cuda_compat("12.8", "12.8")}
    here = check_cuda_compat(torch.version.cuda, driver_cuda)
    return Pitfall(
        CH, "pip install torch gives me the GPU",
        "a torch that imports is a torch that uses the GPU",
        {"torch": torch.__version__, "torch_cuda_build": torch.version.cuda or "none",
         "cuda_available": torch.cuda.is_available(), "gpus_here": len(gpus), "cuda_tensor_error": cuda_error,
         **{f"doctor_{k}": c.status for k, c in cases.items()}, "doctor_here": here.status},
        f"this torch ({torch.__version__}, CUDA build: {torch.version.cuda or 'none'}) says "
        f"cuda.is_available()={torch.cuda.is_available()} and a cuda tensor raises '{cuda_error}'; code that "
        f"picks 'cuda if available' runs on the CPU without a word. The doctor says "
        f"{cases['cpu_wheel_on_gpu_box'].status} for a CPU wheel on a GPU box, "
        f"{cases['cu128_wheel_driver_12_2'].status} for a cu128 wheel on a 12.2 driver, "
        f"{cases['cu128_wheel_driver_12_8'].status} for a match")


def _spin(stop) -> None:  # a neighbour job: one busy core
    while not stop.is_set():
        pass


def _matmul_us(threads: int, a: torch.Tensor, b: torch.Tensor, reps: int) -> float:
    torch.set_num_threads(threads)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def threads_pitfall(smoke: bool) -> Pitfall:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    a, b = torch.randn(64, 576), torch.randn(576, 1536)
    reps = 10 if smoke else 200
    counts = sorted({1, cores, 4 * cores})
    before = torch.get_num_threads()
    us: dict[str, float] = {}
    try:
        for n in counts:
            us[f"us_threads_{n}"] = _matmul_us(n, a, b, reps)
        ctx = mp.get_context("fork")  # the child only spins: no torch, no OpenMP in it
        stop = ctx.Event()
        neighbour = ctx.Process(target=_spin, args=(stop,), daemon=True)
        neighbour.start()
        try:
            time.sleep(0.1)
            for n in counts:
                us[f"us_threads_{n}_neighbour"] = _matmul_us(n, a, b, reps)
        finally:
            stop.set()
            neighbour.join(5)
    finally:
        torch.set_num_threads(before)
    alone = {n: us[f"us_threads_{n}"] for n in counts}
    shared = {n: us[f"us_threads_{n}_neighbour"] for n in counts}
    best_alone, best_shared = min(alone, key=alone.get), min(shared, key=shared.get)
    default_alone, default_shared = alone[cores] / alone[best_alone], shared[cores] / shared[best_shared]
    return Pitfall(
        CH, "more threads = faster",
        "torch's default (one thread per core) or more is always the fastest setting",
        {"cores": cores, **us, "best_threads_alone": best_alone, "default_vs_best_alone": default_alone,
         "best_threads_neighbour": best_shared, "default_vs_best_neighbour": default_shared,
         "oversubscribed_vs_best_alone": alone[4 * cores] / alone[best_alone]},
        f"a 64x576x1536 matmul at 1 / {cores} / {4 * cores} threads took "
        f"{' / '.join(f'{alone[n]:.0f}' for n in counts)} us, and "
        f"{' / '.join(f'{shared[n]:.0f}' for n in counts)} us with another process busy on one core: the "
        f"default ({cores} threads) was {default_alone:.2f}x the best time alone (best: {best_alone}) and "
        f"{default_shared:.2f}x with the neighbour (best: {best_shared}). Threads that outnumber the free "
        f"cores wait on each other in every op: set torch.set_num_threads / OMP_NUM_THREADS to the cores "
        f"that are free, and measure")


def _param_bytes(spec: str | None, dtype: torch.dtype | None) -> int:
    """Parameter bytes of one load; ``dtype=None`` = the loader's default."""
    model = load_hf_model(spec) if dtype is None else load_hf_model(spec, dtype=dtype)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    del model
    gc.collect()
    return params


def dtype_pitfall(model_dir: str | None) -> Pitfall:
    spec = model_dir or EMBEDDED
    fp32_params, bf16_params = _param_bytes(spec, None), _param_bytes(spec, torch.bfloat16)
    arch = Arch.from_config(load_config(spec), os.path.basename(resolve_model_path(spec)))
    kv = {d: vllm_cpu_kv_capacity(arch, d, 1).tokens for d in ("fp32", "bf16")}
    mb = 1e6
    return Pitfall(
        CH, "the model is loaded in bf16",
        "from_pretrained gives the dtype the model was trained in, so nobody has to say bf16",
        {"model": os.path.basename(resolve_model_path(spec)), "param_mb_default": fp32_params / mb,
         "param_mb_bf16": bf16_params / mb, "default_over_bf16": fp32_params / bf16_params,
         "vllm_1gib_kv_tokens_fp32": kv["fp32"], "vllm_1gib_kv_tokens_bf16": kv["bf16"]},
        f"the default load (fp32) holds {fp32_params / mb:.0f} MB of parameters, bf16 "
        f"{bf16_params / mb:.0f} MB ({fp32_params / bf16_params:.1f}x: a 7B model is 28 GB instead of 14 GB); the same choice in vLLM-CPU (--dtype float32) "
        f"halves what 1 GiB of KV cache holds: {kv['fp32']:,} tokens instead of {kv['bf16']:,}")


def run(smoke: bool, model_dir: str | None = None) -> list[Pitfall]:
    return [cuda_pitfall(), threads_pitfall(smoke), dtype_pitfall(model_dir)]


def main(argv: list[str] | None = None) -> int:
    return pitfalls_main("python -m ch03_env.pitfalls", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main())
