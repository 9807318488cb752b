"""B.3 performance-diagnosis checklists (性能问题诊断清单), layer by layer, as code: OK / WARN / FAIL with a fix.

    python -m appendix_b.checklist                         # every layer, defaults for the embedded model
    python -m appendix_b.checklist --layer software
    python -m appendix_b.checklist --layer config --serving --max-num-seqs 32 --kv-cache-gib 0.5
    python -m appendix_b.checklist --layer app --prompt-tokens 1900 --max-tokens 256 --concurrency 1

B.2.3's step-by-step method is the order of the layers: hardware (B.3.1: accelerator, RAM, disk), software
(B.3.2: torch build, driver vs CUDA, library versions, vLLM, C++ compiler, debug settings), configuration
(B.3.3: threads, OpenMP wait policy, dtype vs CPU flags, SIMD level, KV budget, prefix caching) and
application (B.3.4: max_tokens, prompt vs context, concurrency, streaming). A lower layer's FAIL explains
the symptoms of the layers above it, so fix from the top of the list. Exit code 1 when an item FAILs.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys

from appendix_b import items
from ch02_gpu.checklist import check_accelerator, check_threads, check_weight_dtype
from ch03_env.doctor import check_cuda_compat, check_disk, check_ram, check_vllm, probe_nvml, probe_vllm_here
from ch04_kvcache.checklist import check_kv_budget, check_prefix_caching
from common.checklist import Check, add_checklist_args, report
from common.cli import make_parser, positive_int
from common.paths import cache_dir

LAYERS = ("hardware", "software", "config", "app")
GIB = 1 << 30
KV_BYTES_PER_TOKEN_FP32 = 2 * 30 * 3 * 64 * 4  # the embedded model: 2 (K, V) x layers x KV heads x head dim x 4 B


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def hardware(args) -> list[Check]:
    import psutil
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    mem = psutil.virtual_memory()
    return [check_accelerator(gpu), check_ram(mem.available / 1e9, mem.total / 1e9),
            check_disk(shutil.disk_usage(cache_dir()).free / 1e9, str(cache_dir()))]


def software(args) -> list[Check]:
    import torch

    from common.cpp_ext import cpp_toolchain_problem

    driver_cuda, gpus = probe_nvml()
    return [items.check_torch_build(torch.__version__, torch.version.cuda, len(gpus)),
            check_cuda_compat(torch.version.cuda, driver_cuda),
            items.check_min_version("transformers", _version("transformers"), (4, 56)),
            check_vllm(probe_vllm_here(), None if args.no_vllm_probe else _vllm_venv()),
            items.check_compiler(cpp_toolchain_problem()),
            items.check_debug_env(dict(os.environ))]


def _vllm_venv() -> str | None:
    from ch03_env.doctor import probe_vllm_venv

    return probe_vllm_venv()


def config(args) -> list[Check]:
    import psutil
    import torch

    from common.cpu import cpu_flags, native_simd_level

    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return [check_threads(torch.get_num_threads(), cores, os.environ.get("OMP_NUM_THREADS")),
            items.check_omp_wait(os.environ.get("OMP_WAIT_POLICY"), args.serving),
            check_weight_dtype(args.dtype, device, cpu_flags()),
            items.check_simd(native_simd_level(), os.environ.get("LLMIC_SIMD")),
            check_kv_budget(KV_BYTES_PER_TOKEN_FP32 // (2 if args.dtype in ("bf16", "fp16") else 1),
                            int(args.kv_cache_gib * GIB), args.max_model_len, args.max_num_seqs,
                            min(args.avg_len, args.max_model_len)),
            check_prefix_caching(args.shared_prefix, 16, args.max_num_seqs, args.prefix_caching)]


def app(args) -> list[Check]:
    return [items.check_max_tokens(args.max_tokens, args.max_model_len),
            items.check_prompt_fits(args.prompt_tokens, args.max_tokens, args.max_model_len),
            items.check_concurrency(args.concurrency, args.max_num_seqs),
            items.check_streaming(args.stream, args.interactive)]


RUNNERS = {"hardware": hardware, "software": software, "config": config, "app": app}


def run_checks(args) -> list[Check]:
    layers = LAYERS if args.layer == "all" else (args.layer,)
    return [c for layer in layers for c in RUNNERS[layer](args)]


def build_parser():
    parser = make_parser("python -m appendix_b.checklist", __doc__)
    parser.add_argument("--layer", choices=("all", *LAYERS), default="all", help="which B.3 layer")
    g = parser.add_argument_group("configuration (B.3.3)")
    g.add_argument("--serving", action="store_true", help="the process is a server (OpenMP wait policy matters)")
    g.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32", help="weight dtype")
    g.add_argument("--kv-cache-gib", type=float, default=0.5, help="KV cache memory")
    g.add_argument("--max-model-len", type=positive_int, default=2048, help="longest sequence")
    g.add_argument("--max-num-seqs", type=positive_int, default=16, help="sequences per batch")
    g.add_argument("--avg-len", type=positive_int, default=512, help="typical prompt + output tokens")
    g.add_argument("--shared-prefix", type=int, default=0, help="tokens every request shares")
    g.add_argument("--prefix-caching", action="store_true", help="prefix caching is on")
    g = parser.add_argument_group("application (B.3.4)")
    g.add_argument("--prompt-tokens", type=int, default=256, help="longest prompt you send")
    g.add_argument("--max-tokens", type=positive_int, default=None, help="max_tokens per request (unset: none)")
    g.add_argument("--concurrency", type=positive_int, default=8, help="requests in flight at once")
    g.add_argument("--stream", action="store_true", help="requests use stream=true")
    g.add_argument("--interactive", action="store_true", help="a person waits for the answer")
    parser.add_argument("--no-vllm-probe", action="store_true", help="do not start .venv-vllm's python to probe it")
    add_checklist_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.kv_cache_gib <= 0:
        raise SystemExit("--kv-cache-gib must be > 0")
    title = f"appendix B.3 checklist ({args.layer}): fix from the top"
    return report(title, run_checks(args), json_only=args.json, key="checklist")


if __name__ == "__main__":
    sys.exit(main())
