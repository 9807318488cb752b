"""Measure the memory of a real forward pass on CPU (book section 2.3, checked against reality).

Run it in a fresh process so nothing else is resident:

    python -m ch02_gpu.peak_memory --batch 1 --tokens 512

Method (Linux): resident set size (RSS) from ``/proc/self/status``. ``VmRSS`` after ``import torch,
transformers`` is the runtime baseline; RSS after loading the model minus the baseline is what the
weights cost; then the peak-RSS counter (``VmHWM``) is reset by writing ``5`` to
``/proc/self/clear_refs`` and one forward pass with a ``transformers`` KV cache runs, so ``VmHWM`` minus
the RSS before the forward is the forward's own peak (activations + KV cache). One forward of the same
shape runs first, so one-time runtime set-up (OpenMP thread pools, the GEMM library's packing scratch,
which grows with the shape and the thread count) counts as runtime, not activations: the steady state a
serving engine sees (vLLM runs a profiling forward for the same reason). Where the reset is not
allowed, the whole-process peak (``ru_maxrss``) is used and the result says so. Large tensors are
``mmap``-ed by the allocator and returned on free, so RSS follows live tensors closely: the probe tells
glibc (``mallopt``) to ``mmap`` every block of 128 KiB or more and to trim freed heap at once. Without
that, glibc raises its mmap threshold as tensors are freed and keeps freed chunks for reuse, and RSS
misses or double-counts tens of MB, differently on every run and machine.

On a GPU the same numbers come from ``torch.cuda.max_memory_allocated`` (see ``reality.py``).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common.cli import add_common_args, friendly_errors, make_parser, positive_int
from common.report import emit_json


@dataclass(frozen=True, slots=True)
class ForwardMemory:
    """Bytes measured around one forward pass of ``batch x tokens`` new tokens."""

    baseline_rss: int  # interpreter + torch + transformers, before the model
    after_load_rss: int
    before_forward_rss: int
    forward_peak_rss: int  # VmHWM during the forward (after the reset)
    after_forward_rss: int
    kv_cache_bytes: int  # sum of the cache's K/V tensor bytes after the forward
    weight_bytes: int  # sum of unique parameter bytes of the loaded model
    peak_reset: bool  # False: forward_peak_rss is the whole-process peak
    batch: int
    tokens: int
    seconds: float

    @property
    def weights_measured(self) -> int:
        return self.after_load_rss - self.baseline_rss

    @property
    def forward_measured(self) -> int:
        return self.forward_peak_rss - self.before_forward_rss


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}; this probe needs Linux")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cache_nbytes(cache) -> int:
    """Bytes of every K/V tensor a ``transformers`` cache holds (DynamicCache, transformers >= 4.56)."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if t is not None:
                total += t.numel() * t.element_size()
    if total == 0 and hasattr(cache, "key_cache"):  # older transformers
        total = sum(t.numel() * t.element_size() for t in [*cache.key_cache, *cache.value_cache])
    return total


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers (malloc.h)


def make_rss_track_tensors() -> bool:
    """Ask glibc to return freed memory at once, so RSS is live tensors plus runtime (False: not glibc)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 128 * 1024)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 0))
    except (OSError, AttributeError):
        return False


def measure_forward(model_spec: str | None, batch: int, tokens: int, threads: int = 0) -> ForwardMemory:
    """Load the model in this process and measure one forward (see the module docstring)."""
    import torch
    import transformers  # noqa: F401  - part of the runtime baseline

    from common.loader import load_config, load_hf_model

    make_rss_track_tensors()
    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model_type = load_config(model_spec).get("model_type", "llama")
    with contextlib.suppress(ImportError):  # the modeling code is ~100 MB of RSS: part of the runtime
        importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    baseline = _status("VmRSS")
    model = load_hf_model(model_spec, dtype=torch.float32)
    seen: set[int] = set()
    weight_bytes = 0
    with torch.inference_mode():
        for p in model.parameters():
            if p.data_ptr() not in seen:
                seen.add(p.data_ptr())
                weight_bytes += p.numel() * p.element_size()
                p.sum()  # fault in lazily mmap-ed safetensors pages, so RSS holds the weights now
    after_load = _status("VmRSS")
    ids = torch.randint(0, model.config.vocab_size, (batch, tokens))  # (B, T)
    from transformers import DynamicCache

    # transformers 5.2x renamed past_key_values to cache
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.inference_mode():  # warm-up of the same shape: thread pools and GEMM scratch are runtime
        model(input_ids=ids, **{cache_kw: DynamicCache(config=model.config)}, use_cache=True)
    cache = DynamicCache(config=model.config)
    before = _status("VmRSS")
    reset = _reset_peak()
    with torch.inference_mode():
        model(input_ids=ids, **{cache_kw: cache}, use_cache=True)  # logits (B, T, V), dropped at once
    peak = _status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    kv = cache_nbytes(cache)
    return ForwardMemory(baseline, after_load, before, peak, _status("VmRSS"), kv, weight_bytes, reset,
                         batch, tokens, time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch02_gpu.peak_memory", __doc__)
    add_common_args(parser, model=True, smoke=True)
    parser.add_argument("--batch", type=positive_int, default=1)
    parser.add_argument("--tokens", type=positive_int, default=512, help="prompt tokens per sequence")
    args = parser.parse_args(argv)
    with friendly_errors():
        tokens = min(args.tokens, 64) if args.smoke else args.tokens
        m = measure_forward(args.model, args.batch, tokens)
        payload = {**asdict(m), "weights_measured": m.weights_measured, "forward_measured": m.forward_measured}
        if not args.json:
            for k, v in payload.items():
                print(f"{k:>20}: {v}")
        from common.bench import stamp_dict

        emit_json({**payload, "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
