"""Packed int8/int4 weights in chapter 5's engine: batched decode steps on the C++ kernels (book 6.3.4, 6.7.3).

ch05's engine runs every scheduled sequence through one flattened forward, so a decode step of 16
sequences is a 16-row matmul per linear. :class:`~ch06_quantization.cpu_qgemv.PackedLinear` takes all of
those rows in one call: the activations are rounded to int8 once per row, and the weights are laid out in
tiles of 16 rows whose every 64-byte load feeds up to 8 activation rows (VNNI; AVX2 4) -- a small-M GEMM,
not M calls of a GEMV. At batch 16 every weight byte feeds 16 rows, so the step is arithmetic more than
bytes: int4 wins there only because an integer ``vpdpbusd`` does 64 multiply-adds where an fp32 FMA does 16,
and the tile layout keeps the work around it (zero points, converts, scales) to once per 16 rows and block.

:func:`engine_model` prepares a model for the engine the way the engine prepares its own: fp32 gets ch05's
oneDNN-packed linears, int8/int4 get RTN weights in the packed layout (the LM head too, as
``kernel_bench``'s rows and llama.cpp's files do), and every format gets ch04's C++ paged decode
operator. ``max_rows`` is set past any step the engine can schedule, so prefill chunks take the kernel too
and a sequence's tokens do not depend on what it was batched with (tests check the engine's greedy tokens
against ``generate`` on the same model, one prompt at a time).

:func:`engine_tok_s` times the engine on ``batch`` prompts decoded together; decode tok/s counts only the
steps without prefill tokens (the steady state a server at that batch size lives in).

    python -m ch06_quantization.engine_quant                 # fp32 vs int8 vs int4 g64 at batch 16
    python -m ch06_quantization.engine_quant --batch 4 --smoke
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
from torch import nn

from ch06_quantization.rtn import QuantSpec, quantize_model_rtn

FORMATS: dict[str, QuantSpec | None] = {"fp32": None, "int8": QuantSpec(8, "channel", symmetric=True),
                                        "int4 g64": QuantSpec(4, "group", 64)}
ENGINE_GOAL = 1.5    # engine_int4_vs_fp32_tok_s at batch 16: printed beside the measured ratio, never asserted
ALL_ROWS = 1 << 30   # PackedLinear.max_rows for the engine: every step on the kernel
QUANTIZATIONS = {"int8": FORMATS["int8"], "int4": FORMATS["int4 g64"]}   # ch08's --quantization (RTN at load)


def engine_model(model: nn.Module, spec: QuantSpec | None, batch_hint: int = 16) -> nn.Module:
    """``model`` (fp32, CPU), changed in place for ch05's engine: packed linears for ``spec`` (None = fp32
    on oneDNN) and ch04's C++ decode operator where it builds. Returns the model."""
    from ch04_kvcache.paged_decode_cpu import make_decode_kernel
    from ch05_scheduling.cpu_linear import can_prepack, prepack_linears
    from ch06_quantization.cpu_qgemv import use_packed

    if spec is None:
        if can_prepack(torch.float32, "cpu") is None:
            prepack_linears(model, batch_hint=batch_hint)
    else:
        use_packed(quantize_model_rtn(model, spec), max_rows=ALL_ROWS, head=spec)
    model.decode_kernel, _ = make_decode_kernel("cpu", torch.float32)
    return model.eval()


def load_engine_model(model_spec: str, quantization: str | None = None, batch_hint: int = 16) -> nn.Module:
    """ch04's model ready for the engine, from a model spec: a GPTQ / AWQ / compressed-tensors checkpoint
    (``quantization_config`` in its ``config.json``) loads through :func:`checkpoints.load_quantized` and runs
    its integers on the packed kernels; an fp32 model is RTN-quantized at load when ``quantization`` is
    ``"int8"`` (per channel) or ``"int4"`` (g64), else prepared as fp32. ch08's ``--quantization`` is this."""
    from ch04_kvcache.model import LlamaModel
    from ch04_kvcache.paged_decode_cpu import make_decode_kernel
    from ch06_quantization.checkpoints import load_quantized
    from ch06_quantization.cpu_qgemv import use_packed
    from common.errors import UsageError
    from common.loader import load_config, resolve_model_path

    if quantization is not None and quantization not in QUANTIZATIONS:
        raise UsageError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    method = (load_config(model_spec).get("quantization_config") or {}).get("quant_method")
    if method is None:
        model = LlamaModel.from_pretrained(model_spec).float()
        return engine_model(model, QUANTIZATIONS.get(quantization or ""), batch_hint)
    if quantization is not None:
        raise UsageError(f"{model_spec} is already a {method} checkpoint; drop --quantization to serve it as saved")
    model = load_quantized(resolve_model_path(model_spec))
    use_packed(model, max_rows=ALL_ROWS)           # the checkpoint's own integers; its LM head stays as saved
    model.decode_kernel, _ = make_decode_kernel("cpu", torch.float32)
    return model.eval()


@dataclass(frozen=True, slots=True)
class EngineRun:
    weights: str
    batch: int
    output_tokens: int
    wall_s: float
    decode_steps: int
    decode_tok_s: float      # tokens of the decode-only steps / their time
    tok_s: float             # all output tokens / wall time (prefill included)
    token_ids: tuple[tuple[int, ...], ...]


def bench_prompts(batch: int, prompt_len: int, vocab_size: int, seed: int = 0) -> list[list[int]]:
    """``batch`` different prompts of ``prompt_len`` token ids (seeded; ids past the special tokens)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(100, vocab_size, (prompt_len,), generator=g).tolist() for _ in range(batch)]


def engine_tok_s(name: str, model: nn.Module, prompts: list[list[int]], new_tokens: int,
                 repeats: int = 1) -> EngineRun:
    """Greedy-decode ``new_tokens`` for every prompt at once on ch05's engine; the best of ``repeats`` runs."""
    from ch05_scheduling.engine import EngineConfig, LLMEngine
    from ch05_scheduling.sequence import SamplingParams

    batch, longest = len(prompts), max(len(p) for p in prompts)
    blocks = batch * (-(-(longest + new_tokens) // 16)) + 8
    cfg = EngineConfig(num_blocks=blocks, block_size=16, max_num_seqs=batch, cpu_prepack=False,
                       max_num_batched_tokens=max(512, batch + longest), max_model_len=longest + new_tokens + 1)
    params = SamplingParams(max_tokens=new_tokens, ignore_eos=True, temperature=0.0)
    best: EngineRun | None = None
    for i in range(repeats + 1):            # run 0 warms the kernels and caches up and is not counted
        engine = LLMEngine(cfg, model=model)
        t0 = time.perf_counter()
        outs = engine.generate(prompts, params)
        wall = time.perf_counter() - t0
        decode = [r for r in engine.step_log if r.features.num_prefill_tokens == 0]
        dec_tokens, dec_s = sum(r.features.num_tokens for r in decode), sum(r.seconds for r in decode)
        n_out = sum(len(o.token_ids) for o in outs)
        run = EngineRun(name, batch, n_out, wall, len(decode), dec_tokens / dec_s if dec_s else 0.0, n_out / wall,
                        tuple(tuple(o.token_ids) for o in outs))
        if i and (best is None or run.decode_tok_s > best.decode_tok_s):
            best = run
    return best


def compare_engine(model_loader, batch: int = 16, prompt_len: int = 64, new_tokens: int = 32, repeats: int = 2,
                   formats: dict[str, QuantSpec | None] = FORMATS) -> list[EngineRun]:
    """One :class:`EngineRun` per format, each on a fresh model from ``model_loader()``, same prompts."""
    runs = []
    for name, spec in formats.items():
        model = engine_model(model_loader(), spec, batch_hint=batch)
        prompts = bench_prompts(batch, prompt_len, model.config.vocab_size)
        with torch.inference_mode():
            runs.append(engine_tok_s(name, model, prompts, new_tokens, repeats))
        del model
    return runs


def main(argv: list[str] | None = None) -> int:
    from common.cpu import cap_torch_isa

    cap_torch_isa()   # LLMIC_SIMD=avx2 on an AVX-512 CPU: fp32's oneDNN runs AVX2 too, as on an AVX2-only CPU
    from ch04_kvcache.model import LlamaModel
    from ch06_quantization.cpu_decode import bench_model
    from ch06_quantization.cpu_qgemv import qgemv_path
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch06_quantization.engine_quant", __doc__)
    add_common_args(parser)
    parser.add_argument("--batch", type=positive_int, default=16, help="sequences decoded together")
    parser.add_argument("--prompt-len", type=positive_int, default=64, help="tokens per prompt")
    parser.add_argument("--new-tokens", type=positive_int, default=32, help="greedy tokens per sequence")
    parser.add_argument("--repeats", type=positive_int, default=2, help="timed runs per row; the best counts")
    args = parser.parse_args(argv)
    with friendly_errors():
        from ch06_quantization.cpu_gemv import gemv_problem

        problem = gemv_problem()
        if problem:
            raise ValueError(f"cannot build the packed kernels: {problem}")

        def load() -> LlamaModel:
            return bench_model(args.model, args.load_format, args.smoke)

        n_new, repeats = (8, 1) if args.smoke else (args.new_tokens, args.repeats)
        runs = compare_engine(load, args.batch, 16 if args.smoke else args.prompt_len, n_new, repeats)
        print_rows, result = engine_summary(runs)
        if not args.json:
            print_table(print_rows, title=f"ch05 engine, batch {args.batch}, greedy, {n_new} new tokens, kernel path "
                                          f"{qgemv_path()}, fp32 {fp32_isa()}, {torch.get_num_threads()} threads, "
                                          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
            for k in ("engine_int8_vs_fp32_tok_s", "engine_int4_vs_fp32_tok_s"):
                print(f"  {k}: {result[k]:.2f}" + (f" (goal >= {ENGINE_GOAL})" if "int4" in k else ""))
        emit_json({"benchmark": "ch06.engine_quant", "smoke": args.smoke, "batch": args.batch, "new_tokens": n_new,
                   "qgemv_path": qgemv_path(), "fp32_isa": fp32_isa(), **result, "goal_engine_int4_vs_fp32_tok_s": ENGINE_GOAL,
                   "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "hardware": stamp_dict(dtype="fp32+int8+int4", torch_threads=torch.get_num_threads())})
    return 0


def fp32_isa() -> str:
    """What the fp32 row's oneDNN linears may use: the cap in ``ONEDNN_MAX_CPU_ISA``, else ATen's level."""
    return os.environ.get("ONEDNN_MAX_CPU_ISA", torch.backends.cpu.get_cpu_capability()).lower()


def engine_summary(runs: list[EngineRun]) -> tuple[list[dict], dict]:
    """Table rows and the JSON keys: decode tok/s per format and the int8/int4 ratios to fp32."""
    by = {r.weights: r for r in runs}
    base = by["fp32"].decode_tok_s
    rows = [{"weights": r.weights, "batch": r.batch, "decode tok/s": r.decode_tok_s, "vs fp32": r.decode_tok_s / base,
             "tok/s incl. prefill": r.tok_s, "decode steps": r.decode_steps} for r in runs]
    result = {"engine_decode_tok_s": {r.weights: r.decode_tok_s for r in runs},
              "engine_int8_vs_fp32_tok_s": by["int8"].decode_tok_s / base if "int8" in by else None,
              "engine_int4_vs_fp32_tok_s": by["int4 g64"].decode_tok_s / base if "int4 g64" in by else None}
    return rows, result


if __name__ == "__main__":
    raise SystemExit(main())
