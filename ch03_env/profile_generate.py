"""Profile the embedded model's ``generate`` with ``torch.profiler`` and write a trace (book 3.6 tools).

    python -m ch03_env.profile_generate --smoke
    python -m ch03_env.profile_generate --new-tokens 32 --top 15

Writes a Chrome/Perfetto trace (open ``chrome://tracing`` or https://ui.perfetto.dev and load the file) to
``reports/tmp/ch03/generate_trace.json`` (git-ignored: traces are large), prints the operators that took
the most self time, and ends with one JSON line. One warm-up ``generate`` runs first so the trace shows steady-state decode, not first-call
allocation. On a GPU, CUDA kernels are recorded too (``ProfilerActivity.CUDA``).
"""

from __future__ import annotations

import sys
import time

import torch

from common.bench import stamp_dict
from common.chat import FRANCE_PROMPT, chat_ids
from common.cli import add_common_args, friendly_errors, make_parser, positive_int, seed_everything
from common.device import dtype_name, pick_device, pick_dtype, synchronize
from common.loader import load_hf_model, load_tokenizer
from common.paths import reports_dir
from common.report import emit_json, print_table


def profile_generate(model, input_ids: torch.Tensor, new_tokens: int, device: torch.device):
    """Run one profiled greedy ``generate``; returns (profiler, seconds). ``input_ids``: (1, T_prompt)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    kwargs = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}
    with torch.no_grad():
        model.generate(input_ids, **kwargs)  # warm-up, not recorded
        synchronize(device)
        with profile(activities=activities, record_shapes=True) as prof:
            t0 = time.perf_counter()
            with record_function("generate"):
                model.generate(input_ids, **kwargs)
            synchronize(device)
            seconds = time.perf_counter() - t0
    return prof, seconds


def top_ops(prof, n: int, device: torch.device) -> list[dict]:
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    rows = []
    total = sum(getattr(e, key) for e in prof.key_averages()) or 1.0
    for e in sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)[:n]:
        rows.append({"op": e.key[:40], "calls": e.count, "self ms": getattr(e, key) / 1000.0,
                     "share %": 100.0 * getattr(e, key) / total})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch03_env.profile_generate", __doc__)
    add_common_args(parser)
    parser.add_argument("--new-tokens", type=positive_int, default=32)
    parser.add_argument("--top", type=positive_int, default=12, help="operators to list")
    args = parser.parse_args(argv)
    seed_everything(args.seed)
    new_tokens = 4 if args.smoke else args.new_tokens
    with friendly_errors():
        device = pick_device(args.device)
        dtype = pick_dtype(args.dtype, device)
        tok = load_tokenizer(args.model)
        model = load_hf_model(args.model, device, dtype, args.load_format)
        ids = torch.tensor([chat_ids(tok, FRANCE_PROMPT)], device=device)  # (1, T_prompt)
        prof, seconds = profile_generate(model, ids, new_tokens, device)
    trace = reports_dir("tmp", "ch03") / "generate_trace.json"
    prof.export_chrome_trace(str(trace))
    rows = top_ops(prof, args.top, device)
    if not args.json:
        print_table(rows, floatfmt=".2f", title=f"top {len(rows)} operators by self time ({new_tokens} new tokens)")
        print(f"trace: {trace} ({trace.stat().st_size / 1e6:.1f} MB); open it in https://ui.perfetto.dev")
    emit_json({"bench": "ch03_env.profile_generate", "new_tokens": new_tokens, "generate_s": seconds,
               "tokens_per_s_profiled": new_tokens / seconds, "trace": str(trace),
               "top_ops": rows, "hardware": stamp_dict(dtype=dtype_name(dtype))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
