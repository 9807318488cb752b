"""Batch-1 decode on packed int8/int4 weights vs fp32: tokens/s, bytes read per token, MBU (book 6.2, 6.3.4, 6.6.2).

Every row is the whole decode step in one C++ call (``cpu_decode.FusedDecoder``) on the real model; only the
matrices differ:

* ``fp32``: the fused step on fp32 weights in ``cpu_packed``'s layout (the fastest fp32 path we have);
* ``int8``: RTN per-channel symmetric linears *and LM head*, ``cpu_qgemv``'s packed int8 GEMV;
* ``int4 g64``: RTN group-64 asymmetric linears and LM head, ``cpu_qgemv``'s packed int4 GEMV
  (the head quantized too, as llama.cpp's Q4_0 files do);
* ``int4 g64, head fp32``: the linears only, what ``compare``'s int4 g64 rows decode with;
* ``int4 g64, int16 activations``: the int4 row with activations rounded to int16 per block instead of int8
  (``vpdpwssd``): what greedy tokens identical to ``QuantLinear``'s cost.

With llama-cpp-python installed (``make llama-cpp``), the same run adds llama.cpp's rows on the same weights
(``gguf_llama_cpp``: F32, Q8_0 and Q4_0 GGUFs written from the embedded model, the LM head quantized in the
last two) at the same batch size and threads, and ``int4_vs_llama_cpp_q4_0`` / ``int8_vs_llama_cpp_q8_0`` /
``fp32_vs_llama_cpp_f32``; without it those keys are null and the table says why.

MBU = bytes the step reads (every matrix with its scales, zeros and the fp32 norms; one embedding row; for
llama.cpp every tensor of its file) x tokens/s / the read bandwidth measured in the same run. Goals are
printed beside the measured values, never asserted: the machine is shared and timings move by tens of
percent between runs.

    python -m ch06_quantization.kernel_bench [--new-tokens 48] [--smoke] [--no-llama-cpp]
"""

from __future__ import annotations

import time

import torch

GOALS = {"int4_vs_fp32_decode_bs1": 2.5, "int8_vs_fp32_decode_bs1": 1.6, "int4_decode_mbu_bs1": 0.6,
         "int4_vs_llama_cpp_q4_0": 1.0}
PEERS = {"int4_vs_llama_cpp_q4_0": ("int4 g64", "llama.cpp Q4_0"), "int8_vs_llama_cpp_q8_0": ("int8", "llama.cpp Q8_0"),
         "fp32_vs_llama_cpp_f32": ("fp32", "llama.cpp F32")}


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.generate import generate
    from ch04_kvcache.model import LlamaModel
    from ch06_quantization.cpu_decode import FusedDecoder, bench_model, fused_decode_problem
    from ch06_quantization.cpu_qgemv import qgemv_path, use_packed
    from ch06_quantization.gguf_llama_cpp import llama_cpp_problem, llama_cpp_rows
    from ch06_quantization.rtn import QuantSpec, quantize_model_rtn
    from common.bench import mbu, measure_read_bandwidth, stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch06_quantization.kernel_bench", __doc__)
    add_common_args(parser)
    parser.add_argument("--new-tokens", type=positive_int, default=48, help="greedy tokens to decode per run")
    parser.add_argument("--repeats", type=positive_int, default=2, help="runs per row; the best one counts")
    parser.add_argument("--no-llama-cpp", action="store_true", help="leave llama.cpp's rows out even if installed")
    args = parser.parse_args(argv)
    with friendly_errors():
        problem = fused_decode_problem()
        if problem:
            raise ValueError(f"cannot build the fused decoder: {problem}")

        def load() -> LlamaModel:
            return bench_model(args.model, args.load_format, args.smoke)

        int8, int4 = QuantSpec(8, "channel", symmetric=True), QuantSpec(4, "group", 64)

        def packed(spec: QuantSpec, head: QuantSpec | None, act_bits: int = 8):
            def build(m: LlamaModel) -> LlamaModel:
                use_packed(quantize_model_rtn(m, spec), head=head, act_bits=act_bits)
                return m

            return build

        builds = {"fp32": lambda m: m, "int8": packed(int8, int8), "int4 g64": packed(int4, int4),
                  "int4 g64, head fp32": packed(int4, None), "int4 g64, int16 activations": packed(int4, int4, 16)}
        n_new, repeats = (8, 1) if args.smoke else (args.new_tokens, args.repeats)
        prompt = [1, 504, 3458, 282, 4649, 314, 2030, 47]
        mb = 64 if args.smoke else 256
        bw = measure_read_bandwidth(megabytes=mb, repeats=3)
        rows, layers = [], 0
        for name, build in builds.items():
            dec = FusedDecoder(build(load()))
            layers = len(dec.model.layers)
            nbytes = sum(t.numel() * t.element_size() for t in dec._tensors) + dec._embed[0].numel() * 4
            generate(dec, prompt, 4, eos_token_id=None)  # warm-up
            tok_s = max(generate(dec, prompt, n_new, eos_token_id=None).timings.decode_tokens_per_s
                        for _ in range(repeats))
            rows.append({"weights": name, "tok/s": tok_s, "MB read / token": nbytes / 1e6,
                         "GB/s": nbytes * tok_s / 1e9})
            del dec
        peer = ("llama.cpp left out (--no-llama-cpp)" if args.no_llama_cpp else
                "llama.cpp not run with --smoke" if args.smoke else llama_cpp_problem())
        if peer is None:   # llama.cpp on the same weights, same prompt, tokens and threads
            for r in llama_cpp_rows(prompt, n_new, torch.get_num_threads(), repeats):
                r.pop("tokens")
                rows.append({**r, "GB/s": r["MB read / token"] * r["tok/s"] / 1e3})
        bw = max(bw, measure_read_bandwidth(megabytes=mb, repeats=3))  # bandwidth drifts: the best of the two
        by = {r["weights"]: r for r in rows}
        for r in rows:
            r["MBU"] = mbu(r["MB read / token"] * 1e6, r["tok/s"], bw)
            r["vs fp32"] = r["tok/s"] / by["fp32"]["tok/s"]
        measured = {"int4_vs_fp32_decode_bs1": by["int4 g64"]["vs fp32"],
                    "int8_vs_fp32_decode_bs1": by["int8"]["vs fp32"],
                    "int4_decode_mbu_bs1": by["int4 g64"]["MBU"],
                    **{k: by[ours]["tok/s"] / by[theirs]["tok/s"] if theirs in by else None
                       for k, (ours, theirs) in PEERS.items()}}
        if not args.json:
            print_table(rows, title=f"batch-1 greedy decode, fused C++ step, {layers} layers, {n_new} "
                                    f"tokens, path {qgemv_path()}, read bandwidth {bw / 1e9:.1f} GB/s, "
                                    f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
            for k, v in measured.items():
                shown = f"{v:.2f}" if v is not None else f"null: {peer}"
                print(f"  {k}: {shown}" + (f" (goal >= {GOALS[k]})" if k in GOALS else ""))
        emit_json({"benchmark": "ch06.kernel_bench", "smoke": args.smoke, "new_tokens": n_new,
                   "qgemv_path": qgemv_path(), "read_bandwidth_gb_s": bw / 1e9,
                   "tok_s": {r["weights"]: r["tok/s"] for r in rows},
                   "mb_per_token": {r["weights"]: r["MB read / token"] for r in rows},
                   "mbu": {r["weights"]: r["MBU"] for r in rows},
                   **measured, "int4_headfp32_vs_fp32_decode_bs1": by["int4 g64, head fp32"]["vs fp32"],
                   "llama_cpp": "measured" if peer is None else peer,
                   "goals": GOALS, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "hardware": stamp_dict(dtype="fp32+int8+int4", torch_threads=torch.get_num_threads())})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
