"""torch.compile inside ch05's engine (book 9.3, "where it helps"): measured, and on this CPU it does not.

    python -m ch09_advanced.compile_engine              # 16 ShareGPT requests, batch 16, 2 interleaved runs each
    python -m ch09_advanced.compile_engine --smoke      # 4 requests, outputs <= 16

The engine's step is a ragged batch: N tokens (prefill chunks and decodes together), N different every
step, K/V in a paged cache read by a C++ kernel. ``compile_decode``'s static graph does not fit that, so
the part compiled here is the dense one: each layer's SwiGLU MLP, as one function whose weights are
arguments, compiled once with ``dynamic=True`` (a symbolic N) and shared by all layers, so nothing
recompiles as N changes. Three engines' worth of rows, on the same trace, runs interleaved, medians:

- "prepacked linears": the engine's default on CPU fp32 (ch05's ``cpu_linear``: oneDNN-packed weights);
- "plain linears": ``cpu_prepack=False``, every linear an ``F.linear`` (MKL sgemm);
- "plain linears, compiled MLP": the same model with the MLPs compiled.

Tokens must be identical in all three. Why compiling loses here: with N tokens per step the linears
are matrix-matrix products that MKL / oneDNN already run near the CPU's limits; what Inductor can add is
fusing SiLU and the product into the matmuls' neighbours, a few passes over an (N, 1536) tensor, and
its dynamic-shape code pays guards and a generic tiling for that. The one-row matmuls where
``compile_decode``'s ``decompose-mm`` wins do not occur in a batch of 16.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median

import torch
import torch.nn.functional as F
from torch import nn

from common.bench import interleaved, stamp_dict
from common.cli import add_common_args, friendly_errors, make_parser, positive_int, seed_everything
from common.report import emit_json, print_table


def swiglu(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """ch04's ``MLP.forward`` with the weights as arguments: one compiled graph serves all layers."""
    return F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)


class CompiledMLP(nn.Module):
    """Stands in for a layer's ``mlp``: same weights, forward through the shared compiled ``swiglu``."""

    def __init__(self, mlp: nn.Module, compiled) -> None:
        super().__init__()
        self.mlp, self.compiled = mlp, compiled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mlp
        return self.compiled(x, m.gate_proj.weight, m.up_proj.weight, m.down_proj.weight)


def use_compiled_mlps(model: nn.Module, on: bool, compiled=None):
    """Swap every layer's MLP for a :class:`CompiledMLP` (``on``) or back; returns the compiled function."""
    if on and compiled is None:
        compiled = torch.compile(swiglu, dynamic=True)
    for layer in model.layers:
        eager = layer.mlp.mlp if isinstance(layer.mlp, CompiledMLP) else layer.mlp
        layer.mlp = CompiledMLP(eager, compiled) if on else eager
    return compiled


@dataclass(slots=True)
class EngineRow:
    label: str
    tok_s: list[float]
    tokens: list[list[int]]

    @property
    def median(self) -> float:
        return median(self.tok_s)


def run(requests: int = 16, batch: int = 16, max_output: int = 128, repeats: int = 2, seed: int = 0) -> dict:
    from ch05_scheduling.bench import engine_run
    from ch05_scheduling.engine import EngineConfig, LLMEngine
    from ch05_scheduling.workload import sharegpt_trace

    packed = LLMEngine(EngineConfig(max_num_seqs=batch, enable_prefix_caching=True, seed=seed))
    plain = LLMEngine(EngineConfig(max_num_seqs=batch, enable_prefix_caching=True, seed=seed, cpu_prepack=False))
    trace = sharegpt_trace(packed.tokenizer, requests, seed, max_output=max_output, max_prompt=1024)
    compiled = use_compiled_mlps(plain.model, True)
    warm = [list(r.prompt_token_ids) for r in trace[:2]]
    plain.generate(warm, None)  # compiles (one graph, symbolic N) outside the timed runs
    packed.generate(warm[:1], None)
    rows = {k: EngineRow(label, [], []) for k, label in (("prepacked", "prepacked linears (engine default)"),
                                                          ("plain", "plain linears"),
                                                          ("compiled", "plain linears, compiled MLP"))}
    for key in interleaved(list(rows), repeats):
        engine = packed if key == "prepacked" else plain
        if engine is plain:
            use_compiled_mlps(plain.model, key == "compiled", compiled)
        metrics, seqs, _ = engine_run(engine, trace, "continuous")
        rows[key].tok_s.append(metrics["throughput_tok_s"])
        rows[key].tokens = [s.output_token_ids for s in seqs]
    use_compiled_mlps(plain.model, False)
    same = rows["plain"].tokens == rows["compiled"].tokens == rows["prepacked"].tokens
    return {"_rows": [{"engine": r.label, "tok/s (median)": r.median, "runs": len(r.tok_s)} for r in rows.values()],
            "requests": requests, "batch": batch, "output_tokens": sum(r.output_len for r in trace),
            "engine_prepacked_tok_s": rows["prepacked"].median, "engine_plain_tok_s": rows["plain"].median,
            "engine_compiled_mlp_tok_s": rows["compiled"].median,
            "engine_compile_speedup": rows["compiled"].median / rows["plain"].median,
            "engine_compiled_vs_default": rows["compiled"].median / rows["prepacked"].median,
            "engine_compile_tokens_identical": same, "hardware": stamp_dict(dtype="fp32")}


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch09_advanced.compile_engine", __doc__)
    add_common_args(parser, model=False)
    parser.add_argument("--requests", type=positive_int, default=16, help="ShareGPT requests in the trace")
    parser.add_argument("--batch", type=positive_int, default=16, help="the engine's max_num_seqs")
    parser.add_argument("--max-output", type=positive_int, default=128, help="output cap per request")
    parser.add_argument("--repeats", type=positive_int, default=2, help="interleaved runs of each engine")
    args = parser.parse_args(argv)
    with friendly_errors():
        seed_everything(args.seed)
        sizes = dict(requests=4, batch=4, max_output=16, repeats=1) if args.smoke else dict(
            requests=args.requests, batch=args.batch, max_output=args.max_output, repeats=args.repeats)
        out = run(seed=args.seed, **sizes)
        rows = out.pop("_rows")
        if not args.json:
            print_table(rows, title=f"ch05 engine, {out['requests']} ShareGPT requests, batch {out['batch']}, fp32")
        emit_json(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
