"""AWQ from scratch (book 6.4.2; Lin et al., 2023, "AWQ: Activation-aware Weight Quantization").

Observation: a small fraction of input channels carry large activations, and the weights they multiply
matter most. AWQ protects them without mixed precision: scale input channel ``c`` of a linear by ``s_c``
(and divide the previous operator's output by ``s_c``, so the float network is unchanged), then quantize.
A larger ``s_c`` shrinks the relative rounding error on that channel. Per group of linears that share an
input, it searches ``s = mean|x|^alpha`` (normalised) over ``alpha in [0, 1)`` on calibration data,
keeping the ``alpha`` whose *quantized* output is closest to the float output. Then it searches a
per-group clipping threshold for each weight (``auto_clip``), and finally quantizes group-wise (RTN).

Scale groups for a Llama block (as in the reference implementation): ``input_layernorm -> q,k,v``
(inspect the attention output), ``post_attention_layernorm -> gate,up`` (inspect the MLP output),
``up -> down``. ``v -> o`` is skipped when their shapes differ (grouped-query attention, as here).

Run ``python -m ch06_quantization.awq --smoke`` for a one-layer demonstration with an outlier channel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ch06_quantization.calibration import BlockRunner, InputCollector, block_linears
from ch06_quantization.rtn import QuantLinear, QuantSpec, fake_quantize, quantize_rtn, set_module


@dataclass(frozen=True, slots=True)
class AWQConfig:
    spec: QuantSpec = QuantSpec(4, "group", 64, symmetric=False)
    n_grid: int = 20
    search_samples: int = 4  # calibration windows used for the scale search (the rest is not needed)
    clip: bool = True
    clip_tokens: int = 256
    max_shrink: float = 0.5

    def __post_init__(self) -> None:
        if self.n_grid < 1 or self.search_samples < 1 or self.clip_tokens < 1:
            raise ValueError("n_grid, search_samples and clip_tokens must be >= 1")
        if not 0 <= self.max_shrink < 1:
            raise ValueError("max_shrink must be in [0, 1)")


@torch.no_grad()
def search_scale(x: torch.Tensor, linears: list[nn.Linear], inspect: Callable[[torch.Tensor], torch.Tensor],
                 spec: QuantSpec, n_grid: int) -> tuple[torch.Tensor, float, float]:
    """Best per-input-channel scale ``s[in]`` for ``linears`` fed by ``x[..., in]``.

    Returns ``(s, best_alpha, loss_ratio)``: loss at the best alpha over loss at alpha = 0 (plain RTN).
    """
    x_mean = x.reshape(-1, x.shape[-1]).abs().mean(0)  # [in] average magnitude per channel
    ref = inspect(x)
    originals = [lin.weight.data.clone() for lin in linears]
    best = (float("inf"), 0.0, torch.ones_like(x_mean))
    loss0 = None
    for k in range(n_grid):
        alpha = k / n_grid
        s = x_mean.pow(alpha).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        for lin, w in zip(linears, originals, strict=True):
            lin.weight.data = fake_quantize(w * s, spec) / s  # quantize the scaled weight, undo the scale
        loss = float((inspect(x) - ref).pow(2).mean())
        loss0 = loss if loss0 is None else loss0
        if loss < best[0]:
            best = (loss, alpha, s)
    for lin, w in zip(linears, originals, strict=True):
        lin.weight.data = w
    return best[2], best[1], best[0] / max(loss0, 1e-30)


@torch.no_grad()
def search_clip(w: torch.Tensor, x: torch.Tensor, spec: QuantSpec, n_grid: int, max_shrink: float) -> torch.Tensor:
    """Per-group clipping threshold ``[out, G, 1]`` minimising each group's output error on ``x[n, in]``."""
    out_f, in_f = w.shape
    G = spec.n_groups(in_f)
    gs = in_f // G
    wg = w.reshape(out_f, G, gs)
    xg = x.reshape(-1, G, gs).transpose(0, 1)  # [G, n, gs]
    ref = torch.bmm(wg.transpose(0, 1), xg.transpose(1, 2))  # [G, out, n] per-group partial outputs
    org_max = wg.abs().amax(-1, keepdim=True)  # [out, G, 1]
    best_max = org_max.clone()
    min_err = torch.full((out_f, G), float("inf"))
    for i in range(int(max_shrink * n_grid)):
        max_val = org_max * (1 - i / n_grid)
        cur = torch.clamp(wg, -max_val, max_val)
        q = fake_quantize(cur.reshape(out_f, in_f), spec).reshape(out_f, G, gs)
        out = torch.bmm(q.transpose(0, 1), xg.transpose(1, 2))  # [G, out, n]
        err = (out - ref).pow(2).mean(-1).T  # [out, G]
        better = err < min_err
        min_err = torch.where(better, err, min_err)
        best_max = torch.where(better[..., None], max_val, best_max)
    return best_max


@dataclass
class AWQReport:
    seconds: float
    layers: int
    alphas: dict[str, float]  # "layers.3.attn" -> chosen alpha
    loss_ratio: dict[str, float]  # quantized-output loss with AWQ scales / with plain RTN


def _capture_inputs(block: nn.Module, runner: BlockRunner, x: torch.Tensor) -> dict[str, torch.Tensor]:
    feats: dict[str, list[torch.Tensor]] = {}
    with InputCollector(block_linears(block), lambda n, t: feats.setdefault(n, []).append(t)):
        runner.block_forward(block, x)
    return {n: torch.cat(v) for n, v in feats.items()}


@torch.no_grad()
def awq_block(i: int, block: nn.Module, runner: BlockRunner, cfg: AWQConfig, report: AWQReport) -> None:
    """Scale search, scale folding, clip search and group-wise quantization of one decoder block."""
    x = runner.inputs.x[: cfg.search_samples]  # [k, T, hidden]
    attn, mlp = block.self_attn, block.mlp
    # 1) input_layernorm -> q, k, v (inspect: the attention output)
    h = block.input_layernorm(x)
    s, a, r = search_scale(h, [attn.q_proj, attn.k_proj, attn.v_proj],
                           lambda t: runner.attention(block, t), cfg.spec, cfg.n_grid)
    block.input_layernorm.weight.data /= s
    for lin in (attn.q_proj, attn.k_proj, attn.v_proj):
        lin.weight.data *= s
    report.alphas[f"layers.{i}.attn"], report.loss_ratio[f"layers.{i}.attn"] = a, r
    # 2) post_attention_layernorm -> gate, up (inspect: the MLP output)
    x2 = x + runner.attention(block, block.input_layernorm(x))
    h2 = block.post_attention_layernorm(x2)
    s, a, r = search_scale(h2, [mlp.gate_proj, mlp.up_proj], mlp, cfg.spec, cfg.n_grid)
    block.post_attention_layernorm.weight.data /= s
    for lin in (mlp.gate_proj, mlp.up_proj):
        lin.weight.data *= s
    report.alphas[f"layers.{i}.mlp"], report.loss_ratio[f"layers.{i}.mlp"] = a, r
    # 3) up -> down (inspect: down_proj alone)
    h2 = block.post_attention_layernorm(x2)  # recomputed: the norm and gate/up now carry the scales
    act = nn.functional.silu(mlp.gate_proj(h2)) * mlp.up_proj(h2)  # [k, T, intermediate]
    s, a, r = search_scale(act, [mlp.down_proj], mlp.down_proj, cfg.spec, cfg.n_grid)
    mlp.up_proj.weight.data /= s[:, None]
    mlp.down_proj.weight.data *= s
    report.alphas[f"layers.{i}.down"], report.loss_ratio[f"layers.{i}.down"] = a, r
    # 4) clip search on the scaled weights (not q/k: their error passes through softmax), then quantize
    feats = _capture_inputs(block, runner, x)
    for name, lin in block_linears(block).items():
        w = lin.weight.data
        if cfg.clip and not name.endswith(("q_proj", "k_proj")):
            xs = feats[name]
            xs = xs[torch.linspace(0, xs.shape[0] - 1, min(cfg.clip_tokens, xs.shape[0])).long()]
            max_val = search_clip(w, xs, cfg.spec, cfg.n_grid, cfg.max_shrink)
            G = cfg.spec.n_groups(w.shape[1])
            w = torch.clamp(w.reshape(w.shape[0], G, -1), -max_val, max_val).reshape(w.shape)
        set_module(block, name, QuantLinear(quantize_rtn(w, cfg.spec), lin.bias))


@torch.no_grad()
def awq_quantize_model(model: nn.Module, calib_ids: torch.Tensor, cfg: AWQConfig, batch: int = 4,
                       progress: bool = False) -> AWQReport:
    """AWQ every decoder block of ch04's ``LlamaModel`` in place (norm weights change: scales folded in)."""
    t0 = time.perf_counter()
    runner = BlockRunner(model, calib_ids, batch=batch)
    report = AWQReport(0.0, runner.num_layers, {}, {})

    def step(i: int, block: nn.Module, r: BlockRunner) -> None:
        awq_block(i, block, r, cfg, report)
        if progress:
            print(f"  awq block {i + 1}/{r.num_layers} ({time.perf_counter() - t0:.1f} s)", flush=True)

    runner.run_all(step)
    report.seconds = time.perf_counter() - t0
    return report


def main(argv: list[str] | None = None) -> int:
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch06_quantization.awq", __doc__)
    add_common_args(parser)
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=64)
    args = parser.parse_args(argv)
    with friendly_errors():
        torch.manual_seed(args.seed)
        n_in, n_out, n_tok = (128, 64, 512) if args.smoke else (576, 576, 4096)
        x = torch.randn(n_tok, n_in)
        x[:, : n_in // 32] *= 30  # a few outlier channels, as real LLM activations have
        lin = nn.Linear(n_in, n_out, bias=False)
        spec = QuantSpec(args.bits, "group", args.group_size)
        ref = lin(x)
        rtn_err = float((x @ fake_quantize(lin.weight.data, spec).T - ref).pow(2).mean())
        s, alpha, ratio = search_scale(x, [lin], lin, spec, 20)
        awq_err = float((x @ (fake_quantize(lin.weight.data * s, spec) / s).T - ref).pow(2).mean())
        rows = [{"method": "RTN", "output_mse": rtn_err}, {"method": f"AWQ scales (alpha={alpha:.2f})",
                                                           "output_mse": awq_err}]
        if not args.json:
            print_table(rows, title=f"one {n_out}x{n_in} layer with outlier input channels, {spec.label()}",
                        floatfmt=".3e")
        emit_json({"benchmark": "ch06.awq_layer", "alpha": alpha, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
