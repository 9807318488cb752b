"""The memory calculator checked against reality (book section 2.3): prediction vs measurement.

    python -m ch02_gpu.reality            # embedded model, forward of 1 x 512 tokens (~30 s on 2 cores)
    python -m ch02_gpu.reality --smoke    # 1 x 64 tokens

Rows of the error table:

* weights: predicted bytes (parameter count x 4) vs the tensor bytes in ``model.safetensors`` (exact)
  and vs the resident memory the loaded weights take (RSS delta, ``ch02_gpu.peak_memory``);
* KV cache: ``2 x layers x kv_heads x head_dim x 4 x tokens`` vs the K/V tensors of a ``transformers``
  DynamicCache after a real forward (exact; tests also compare with ch04's caches);
* forward peak: predicted KV + activations vs the peak RSS of that forward, measured in a fresh
  process; and the whole model-dependent footprint (weights + KV + activations) vs resident weights
  plus that forward peak. What a warm-up forward of the same shape adds (thread pools, GEMM scratch:
  20-50 MB, more with more cores) is runtime, counted in the baseline row, like the CUDA context on a GPU;
* vLLM-CPU KV capacity: the prediction for ``VLLM_CPU_KVCACHE_SPACE`` (the vllm-marked test starts vLLM
  and compares the number it logs);
* on a GPU: ``torch.cuda.max_memory_allocated`` of the same forward vs the prediction.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ch02_gpu.estimate import vllm_cpu_kv_capacity
from ch02_gpu.memory import Arch, activation_bytes, count_params, kv_bytes_per_token, weights_bytes
from common.bench import stamp_dict
from common.cli import add_common_args, friendly_errors, make_parser, positive_int
from common.loader import load_config, resolve_model_path
from common.paths import REPO_ROOT
from common.report import emit_json, parse_json_line, print_table


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the error table."""

    quantity: str
    predicted: float | None  # None: a measured-only row
    measured: float | None
    method: str
    unit: str = "MB"  # bytes shown in MB, or "tokens"

    @property
    def error(self) -> float | None:
        """(predicted - measured) / measured; None when nothing was measured."""
        if self.measured in (None, 0) or self.predicted is None:
            return None
        return (self.predicted - self.measured) / self.measured

    def row(self) -> dict:
        err = self.error
        def show(v: float | None) -> float | int | str:
            if v is None:
                return "-"
            return round(v / 1e6, 2) if self.unit == "MB" else int(v)

        return {"quantity": self.quantity, "unit": self.unit, "predicted": show(self.predicted),
                "measured": show(self.measured),
                "error": "-" if err is None else f"{err:+.1%}", "method": self.method}


def safetensors_bytes(folder: str | Path) -> int:
    """Sum of tensor bytes recorded in the headers of every ``*.safetensors`` file in ``folder``."""
    total = 0
    for f in sorted(Path(folder).glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        header.pop("__metadata__", None)
        total += sum(v["data_offsets"][1] - v["data_offsets"][0] for v in header.values())
    return total


def run_probe(model: str, batch: int, tokens: int, timeout: float = 600) -> dict:
    """Run ``ch02_gpu.peak_memory`` in a fresh interpreter (clean RSS) and return its JSON line."""
    cmd = [sys.executable, "-m", "ch02_gpu.peak_memory", "--model", model, "--batch", str(batch),
           "--tokens", str(tokens), "--json"]
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the memory probe failed: {proc.stderr.strip().splitlines()[-1:]}")
    return parse_json_line(proc.stdout)


def cpu_checks(model: str, batch: int, tokens: int, kv_space_gib: int = 1) -> list[Check]:
    arch = Arch.from_config(load_config(model), name=model)
    w_pred = weights_bytes(count_params(arch), "fp32")
    kv_pred = kv_bytes_per_token(arch, "fp32") * batch * tokens
    act_pred = activation_bytes(arch, batch, tokens, 4, logits_tokens="all")  # a plain HF forward
    probe = run_probe(model, batch, tokens)
    folder = resolve_model_path(model)
    return [
        Check("weights (file)", w_pred, safetensors_bytes(folder), "tensor bytes in the safetensors headers"),
        Check("weights (resident)", w_pred, probe["weights_measured"], "RSS after load+touch minus baseline"),
        Check("KV cache", kv_pred, probe["kv_cache_bytes"], "transformers DynamicCache K/V bytes after forward"),
        Check(f"forward peak (KV + activations, {batch}x{tokens})", kv_pred + act_pred,
              probe["forward_measured"], "VmHWM during forward minus RSS before it"),
        Check("weights + KV + activations", w_pred + kv_pred + act_pred,
              probe["weights_measured"] + probe["forward_measured"],
              "resident weights + forward peak (runtime warm-up excluded)"),
        Check(f"vLLM-CPU KV capacity (VLLM_CPU_KVCACHE_SPACE={kv_space_gib})",
              vllm_cpu_kv_capacity(arch, "fp32", kv_space_gib).tokens, None,
              "measured by the vllm test (tests/ch02/test_vllm_capacity.py)", unit="tokens"),
        Check("runtime baseline (python+torch+transformers)", None,
              probe["baseline_rss"] + probe["before_forward_rss"] - probe["after_load_rss"],
              "RSS after imports + a warm-up forward (thread pools, GEMM scratch); on a GPU the CUDA context"),
    ]


def gpu_checks(model: str, batch: int, tokens: int) -> list[Check]:
    """On a CUDA GPU: the allocator's view of the same forward in bf16 (a ``gpu`` test runs it)."""
    import torch

    from common.loader import load_hf_model

    arch = Arch.from_config(load_config(model), name=model)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    m = load_hf_model(model, device="cuda", dtype=torch.bfloat16)
    loaded = torch.cuda.memory_allocated()
    ids = torch.randint(0, arch.vocab_size, (batch, tokens), device="cuda")
    with torch.inference_mode():  # warm-up: cuBLAS workspaces and kernel state are runtime, not activations
        m(input_ids=ids[:1, :8], use_cache=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        m(input_ids=ids, use_cache=True)
    peak = torch.cuda.max_memory_allocated() - loaded
    w_pred = weights_bytes(count_params(arch), "bf16")
    fwd_pred = kv_bytes_per_token(arch, "bf16") * batch * tokens + activation_bytes(
        arch, batch, tokens, 2, logits_tokens="all")
    rows = [Check("GPU weights", w_pred, loaded - base, "torch.cuda.memory_allocated delta"),
            Check("GPU forward peak", fwd_pred, peak, "torch.cuda.max_memory_allocated minus weights")]
    try:
        import pynvml

        pynvml.nvmlInit()
        used = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used
        rows.append(Check("GPU total (nvidia-smi view)", w_pred + fwd_pred, used,
                          "pynvml used memory (includes CUDA context and cache)"))
    except Exception:  # noqa: BLE001 - pynvml is optional on some GPU hosts
        pass
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch02_gpu.reality", __doc__)
    add_common_args(parser, model=True, smoke=True)
    parser.add_argument("--batch", type=positive_int, default=1)
    parser.add_argument("--tokens", type=positive_int, default=512, help="prompt tokens per sequence")
    parser.add_argument("--kv-cache-space", type=positive_int, default=1, help="VLLM_CPU_KVCACHE_SPACE GiB")
    args = parser.parse_args(argv)
    with friendly_errors():
        tokens = min(args.tokens, 64) if args.smoke else args.tokens
        checks = cpu_checks(args.model, args.batch, tokens, args.kv_cache_space)
        import torch

        if torch.cuda.is_available():
            checks += gpu_checks(args.model, args.batch, tokens)
        elif not args.json:
            print("No CUDA GPU here: the GPU rows (torch.cuda, pynvml) are skipped.")
        if not args.json:
            print_table([c.row() for c in checks], title="memory: prediction vs measurement")
        emit_json({"checks": [{"quantity": c.quantity, "predicted": c.predicted, "measured": c.measured,
                               "error": c.error} for c in checks],
                   "batch": args.batch, "tokens": tokens, "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
