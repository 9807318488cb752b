"""Chapter 9 benchmark: every measured figure of the chapter in one run, ending with one JSON line.

    python -m ch09_advanced.bench            # full sizes (compile and export take minutes on 2 cores)
    python -m ch09_advanced.bench --smoke    # small sizes; builds are cached after the first run

Each part runs the module that owns it (flash_attention, moe, compile_decode, triton_ops, cpp_op,
paged_decode_bench, paged_decode_triton, edge);
a part that cannot run here (missing optional package) reports null and says why in one sentence.
"""

from __future__ import annotations

from collections.abc import Callable

from ch09_advanced import triton_ops  # first: it sets TRITON_INTERPRET before anything imports triton
from common.bench import stamp_dict
from common.cli import figures_main


def _part(name: str, fn: Callable[[], dict], notes: list[str]) -> dict:
    try:
        out = fn()
    except Exception as exc:  # one optional part failing must not hide the others
        notes.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
        return {}
    out.pop("_rows", None)
    out.pop("_per_layer", None)
    return out


def run(smoke: bool) -> dict:
    from ch09_advanced import (
        compile_decode,
        cpp_op,
        edge,
        flash_attention,
        moe,
        paged_decode_bench,
        paged_decode_triton,
    )

    notes: list[str] = []
    fl = _part("flash", lambda: flash_attention.run(smoke=smoke), notes)
    mo = _part("moe", lambda: {**moe.compare_routing(256 if smoke else 1024, 256, 512, 8, 2, 2 if smoke else 5),
                               **moe.mixtral_numbers()}, notes)
    modes = ("decompose-mm",) if smoke else ("default", "freezing", "decompose-mm")
    co = _part("compile", lambda: compile_decode.run(smoke=smoke, modes=modes), notes)
    tr = _part("triton", lambda: triton_ops.run(smoke=smoke), notes)
    cp = _part("cpp", lambda: cpp_op.run(smoke=smoke), notes)
    pd = _part("paged_decode", lambda: {**paged_decode_bench.compare(4 if smoke else 16, 256 if smoke else 1024),
                                        **(paged_decode_bench.engine_speedup(4, 8, 128, 4) if smoke else
                                           paged_decode_bench.engine_speedup(32, 128, 1024, 16))}, notes)
    tp = _part("triton_paged", lambda: paged_decode_triton.run(smoke=smoke), notes)  # GPU; interpreter on CPU
    ed = _part("edge", lambda: edge.run(smoke=smoke), notes)
    return {"compile_speedup": co.get("compile_speedup"), "compile_tokens_identical": co.get("compile_tokens_identical"),
            "decode_mbu_bs1": co.get("decode_mbu_bs1"), "decode_vs_llama_cpp": co.get("decode_vs_llama_cpp"),
            "compile_layers": co.get("layers"), "compile_s": co.get("compile_s"),
            "compile_mode": co.get("compile_mode"), "fastest_decode_mode": co.get("fastest_mode"),
            "eager_tok_s": co.get("eager_tok_s"), "compiled_tok_s": co.get("compiled_tok_s"),
            "prepacked_eager_tok_s": co.get("prepacked_tok_s"), "gemv_eager_tok_s": co.get("gemv_tok_s"),
            "gemv_compiled_tok_s": co.get("gemv_compiled_tok_s"), "fused_decode_tok_s": co.get("fused_tok_s"),
            "llama_cpp_tok_s": co.get("llama_cpp_tok_s"),
            "decode_mbu_bs1_llama_cpp": co.get("decode_mbu_bs1_llama_cpp"),
            "graph_break_count": co.get("graph_break_count"),
            "flash_max_abs_diff": fl.get("flash_max_abs_diff"),
            "flash_memory_ratio_at_4096": fl.get("flash_memory_ratio_at_4096"),
            "triton_max_abs_diff": tr.get("triton_max_abs_diff"), "triton_mode": tr.get("mode"),
            "cpp_op_speedup": cp.get("cpp_op_speedup"),
            "paged_decode_kernel_speedup": pd.get("speedup"), "paged_decode_max_abs_diff": pd.get("max abs diff"),
            "engine_kernel_speedup": pd.get("engine_kernel_speedup"),
            "engine_with_kernel_tok_s": pd.get("engine_with_kernel_tok_s"),
            "engine_kernel_tokens_identical": pd.get("engine_kernel_tokens_identical"),
            "triton_paged_max_abs_diff": tp.get("triton_paged_max_abs_diff"), "triton_paged_mode": tp.get("mode"),
            "triton_paged_speedup_at_longest": tp.get("triton_paged_speedup_at_longest"),
            "onnx_int8_vs_torch_fp32_tok_s": ed.get("onnx_int8_vs_torch_fp32_tok_s"),
            "onnx_int8_size_ratio": ed.get("onnx_int8_size_ratio"),
            "moe_grouped_vs_loop": mo.get("moe_grouped_vs_loop"),
            "mixtral_params_b": mo.get("mixtral_params_b"), "mixtral_active_params_b": mo.get("mixtral_active_params_b"),
            "notes": notes, "hardware": stamp_dict(dtype="fp32")}


def _print_notes(out: dict) -> None:
    for note in out["notes"]:
        print(f"skipped {note}")


def main(argv: list[str] | None = None) -> int:
    return figures_main("python -m ch09_advanced.bench", __doc__, run, "chapter 9 (CPU, fp32)", argv,
                        hide=("hardware", "notes"), after_table=_print_notes)


if __name__ == "__main__":
    raise SystemExit(main())
