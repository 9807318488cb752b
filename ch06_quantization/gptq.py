"""GPTQ from scratch (book 6.4.1; Frantar et al., 2022, "GPTQ: Accurate Post-Training Quantization").

For one linear layer ``Y = X W^T`` GPTQ minimises ``||X W^T - X W_hat^T||^2`` column by column: quantize
column ``j``, then spread its error over the columns not yet quantized using the inverse Hessian
``H^-1`` of the layer-wise loss, ``H = 2 X^T X / n`` (from calibration activations). The pieces:

* damping: ``H += percdamp * mean(diag H) * I`` so the Cholesky factorisation exists;
* ``H^-1`` through Cholesky: ``U = chol(H^-1)^T`` (upper); row ``j`` of ``U`` is what the error of column
  ``j`` is multiplied by -- no matrix is re-inverted during the sweep;
* lazy batch updates: columns are processed in blocks of ``block_size``; inside a block the update is a
  rank-1 step per column, the rest of the matrix gets one matmul per block;
* act-order: quantize columns in order of decreasing ``diag(H)`` (the most active inputs first, while
  the most columns remain to absorb their error); groups then follow that order, recorded in ``g_idx``;
* groups: scale/zero of a group are computed from the *error-compensated* weights when the sweep
  reaches the group's first column.

:func:`gptq_quantize_model` applies it block by block through :class:`~ch06_quantization.calibration.BlockRunner`
(one block's Hessians in memory at a time). :func:`gptq_reference` is the naive version (one column at a
time, ``H^-1`` updated by explicit elimination, no lazy batches) that the tests compare against.

Run ``python -m ch06_quantization.gptq --smoke`` for a one-layer demonstration against RTN.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from ch06_quantization.calibration import BlockRunner, InputCollector, block_linears
from ch06_quantization.rtn import QuantizedWeight, QuantLinear, QuantSpec, qparams, quantize_with, set_module


@dataclass(frozen=True, slots=True)
class GPTQConfig:
    spec: QuantSpec = QuantSpec(4, "group", 64, symmetric=False)
    percdamp: float = 0.01
    block_size: int = 128
    act_order: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.percdamp < 1:
            raise ValueError("percdamp must be in [0, 1)")
        if self.block_size < 1:
            raise ValueError("block_size must be >= 1")


class HessianAccumulator:
    """Running ``H = 2/n * sum x x^T`` over calibration rows ``x[in]`` (fp32, ``[in, in]``)."""

    def __init__(self, in_features: int) -> None:
        self.H = torch.zeros(in_features, in_features)
        self.n = 0

    def add(self, x: torch.Tensor) -> None:  # x [tokens, in]
        x = x.float()
        m = x.shape[0]
        self.H *= self.n / (self.n + m)
        self.n += m
        x = x * (2.0 / self.n) ** 0.5
        self.H += x.T @ x


def _inverse_hessian_upper(H: torch.Tensor, percdamp: float) -> torch.Tensor:
    """Damped ``H``, inverted, returned as the upper Cholesky factor of ``H^-1``."""
    H = H.clone()
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(H.shape[0])
    L = torch.linalg.cholesky(H)
    Hinv = torch.cholesky_inverse(L)
    return torch.linalg.cholesky(Hinv, upper=True)


def _prepare(W: torch.Tensor, H: torch.Tensor, act_order: bool):
    """Zero dead inputs (never active), pick the column order."""
    W, H = W.float().clone(), H.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    perm = torch.argsort(torch.diag(H), descending=True) if act_order else torch.arange(W.shape[1])
    return W[:, perm], H[perm][:, perm], perm


def _group_params(spec: QuantSpec, w_cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale/zero per row from the columns of one group (``w_cols[out, g]``) or a whole matrix."""
    if spec.granularity == "tensor":
        s, z = qparams(w_cols.reshape(1, -1), spec)
        return s.expand(w_cols.shape[0]), z.expand(w_cols.shape[0])
    return qparams(w_cols, spec)


def _finish(Q: torch.Tensor, scales: list, zeros: list, perm: torch.Tensor, spec: QuantSpec,
            act_order: bool) -> QuantizedWeight:
    invperm = torch.argsort(perm)
    Q = Q[:, invperm]
    s = torch.stack(scales, dim=1)  # [out, G]
    z = torch.stack(zeros, dim=1)
    g_idx = None
    if spec.granularity == "group" and act_order:
        g_idx = (torch.arange(Q.shape[1]) // spec.group_size)[invperm].to(torch.int32)
    if spec.granularity == "tensor":
        s, z = s[:1], z[:1]
    return QuantizedWeight(Q.to(torch.uint8), s, z, spec, g_idx)


def gptq_quantize_weight(W: torch.Tensor, H: torch.Tensor, cfg: GPTQConfig) -> QuantizedWeight:
    """GPTQ of ``W[out, in]`` given the Hessian ``H[in, in]`` (blocked, lazy-batch version)."""
    spec = cfg.spec
    W, H, perm = _prepare(W, H, cfg.act_order)
    rows, cols = W.shape
    gs = spec.group_size if spec.granularity == "group" else cols
    spec.n_groups(cols)  # validates divisibility
    bs = max(gs, cfg.block_size) if spec.granularity == "group" else cfg.block_size
    if spec.granularity == "group":
        bs = bs // gs * gs  # blocks hold whole groups, so each group's params see its updated weights
    U = _inverse_hessian_upper(H, cfg.percdamp)
    Q = torch.zeros_like(W)
    scales, zeros = [], []
    if spec.granularity != "group":
        s, z = _group_params(spec, W)
        scales.append(s)
        zeros.append(z)
    for i1 in range(0, cols, bs):
        i2 = min(i1 + bs, cols)
        W1 = W[:, i1:i2].clone()  # [out, b]
        Err1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            if spec.granularity == "group" and i % gs == 0:
                s, z = _group_params(spec, W1[:, i:i + gs])
                scales.append(s)
                zeros.append(z)
            w = W1[:, i]
            q = quantize_with(w, s, z, spec.maxq)
            Q[:, i1 + i] = q
            err = (w - (q - z) * s) / U1[i, i]
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]  # rank-1 compensation inside the block
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]  # lazy update of everything after the block
    return _finish(Q, scales, zeros, perm, spec, cfg.act_order)


def gptq_reference(W: torch.Tensor, H: torch.Tensor, cfg: GPTQConfig) -> QuantizedWeight:
    """The naive OBQ-style sweep: after each column, eliminate it from ``H^-1`` explicitly (O(in^3) per
    column ... fine for small test matrices). Mathematically equal to :func:`gptq_quantize_weight`."""
    spec = cfg.spec
    W, H, perm = _prepare(W, H, cfg.act_order)
    W = W.double()
    H = H.double() + cfg.percdamp * torch.mean(torch.diag(H.double())) * torch.eye(H.shape[0], dtype=torch.double)
    Hinv = torch.linalg.inv(H)
    rows, cols = W.shape
    gs = spec.group_size if spec.granularity == "group" else cols
    Q = torch.zeros_like(W)
    scales, zeros = [], []
    if spec.granularity != "group":
        s, z = _group_params(spec, W.float())
        scales.append(s)
        zeros.append(z)
    for j in range(cols):
        if spec.granularity == "group" and j % gs == 0:
            s, z = _group_params(spec, W[:, j:j + gs].float())
            scales.append(s)
            zeros.append(z)
        q = quantize_with(W[:, j].float(), s, z, spec.maxq).double()
        Q[:, j] = q
        err = (W[:, j] - (q - z.double()) * s.double()) / Hinv[j, j]
        W[:, j:] -= err[:, None] * Hinv[j, j:][None, :]
        # remove column j from the inverse Hessian (Gaussian elimination step)
        Hinv = Hinv - Hinv[:, j:j + 1] @ Hinv[j:j + 1, :] / Hinv[j, j]
    return _finish(Q.float(), scales, zeros, perm, spec, cfg.act_order)


def layer_loss(W: torch.Tensor, W_hat: torch.Tensor, H: torch.Tensor) -> float:
    """The GPTQ objective ``tr((W - W_hat) H (W - W_hat)^T)`` (proportional to the output MSE)."""
    D = (W - W_hat).float()
    return float(torch.einsum("oi,ij,oj->", D, H, D))


@dataclass
class GPTQReport:
    seconds: float
    layers: int
    linears: int
    peak_block_stats_bytes: int  # Hessians + activations held for one block


SHARED_INPUTS = (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), ("mlp.gate_proj", "mlp.up_proj"))


def shared_input_groups(names: list[str]) -> list[tuple[str, ...]]:
    """Partition a block's linear names into groups that read the same input (Llama: qkv, gate/up)."""
    groups, used = [], set()
    for group in SHARED_INPUTS:
        if all(n in names for n in group):
            groups.append(group)
            used.update(group)
    return groups + [(n,) for n in names if n not in used]


@torch.no_grad()
def gptq_quantize_block(block: nn.Module, runner: BlockRunner, cfg: GPTQConfig) -> int:
    """Hessians from the block's calibration inputs, then GPTQ of each of its linears (in place).

    Returns the bytes of statistics held for this block (Hessians + activations): the peak of the run.
    """
    linears = block_linears(block)
    groups = shared_input_groups(list(linears))
    hs = {g[0]: HessianAccumulator(linears[g[0]].in_features) for g in groups}  # one H per shared input
    with InputCollector({n: linears[n] for n in hs}, lambda name, x: hs[name].add(x)):
        for x in runner.chunks():
            runner.block_forward(block, x)
    for names in groups:
        # Linears fed by the same input share H (and, with act-order, the column order): stacking their
        # rows runs one column sweep instead of several. Rows are independent, so this is exact.
        W = torch.cat([linears[n].weight.data for n in names])  # [sum(out), in]
        qw = gptq_quantize_weight(W, hs[names[0]].H, cfg)
        start = 0
        for n in names:
            rows = slice(start, start + linears[n].out_features)
            per_row = qw.scales.shape[0] > 1
            part = QuantizedWeight(qw.q[rows], qw.scales[rows] if per_row else qw.scales,
                                   qw.zeros[rows] if per_row else qw.zeros, qw.spec, qw.g_idx)
            set_module(block, n, QuantLinear(part, linears[n].bias))
            start = rows.stop
    return sum(h.H.numel() * 4 for h in hs.values()) + runner.inputs.x.numel() * 4


@torch.no_grad()
def gptq_quantize_model(model: nn.Module, calib_ids: torch.Tensor, cfg: GPTQConfig, batch: int = 4,
                        progress: bool = False) -> GPTQReport:
    """Quantize every decoder linear of ch04's ``LlamaModel`` in place, block by block."""
    t0 = time.perf_counter()
    runner = BlockRunner(model, calib_ids, batch=batch)
    peak = [0]

    def quantize_block(i: int, block: nn.Module, r: BlockRunner) -> None:
        peak[0] = max(peak[0], gptq_quantize_block(block, r, cfg))
        if progress:
            print(f"  gptq block {i + 1}/{r.num_layers} ({time.perf_counter() - t0:.1f} s)", flush=True)

    runner.run_all(quantize_block)
    count = sum(isinstance(m, QuantLinear) for m in model.layers.modules())
    return GPTQReport(time.perf_counter() - t0, runner.num_layers, count, peak[0])


def _time_whole_model(args) -> int:
    from ch06_quantization.calibration import calibration_ids
    from ch06_quantization.evaluate import load_model
    from common.bench import stamp_dict
    from common.loader import load_tokenizer
    from common.report import emit_json

    model = load_model(args.model)
    ids = calibration_ids(load_tokenizer(args.model), 2 if args.smoke else 16, 64 if args.smoke else 256)
    if args.smoke:
        model.layers = model.layers[:2]
    c0 = time.process_time()
    rep = gptq_quantize_model(model, ids, GPTQConfig(QuantSpec(args.bits, "group", args.group_size)),
                              progress=not args.json)
    cpu = time.process_time() - c0
    if not args.json:
        print(f"GPTQ of {rep.layers} layers ({rep.linears} linears): {rep.seconds:.1f} s wall, {cpu:.1f} s CPU "
              f"on {torch.get_num_threads()} thread(s); peak block statistics {rep.peak_block_stats_bytes / 1e6:.1f} MB")
    emit_json({"benchmark": "ch06.gptq_whole_model", "wall_s": rep.seconds, "cpu_s": cpu, "layers": rep.layers,
               "calib_tokens": int(ids.numel()), "peak_block_stats_bytes": rep.peak_block_stats_bytes,
               "hardware": stamp_dict(dtype="fp32")})
    return 0


def main(argv: list[str] | None = None) -> int:
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch06_quantization.gptq", __doc__)
    add_common_args(parser)
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=64)
    parser.add_argument("--whole-model", action="store_true",
                        help="GPTQ every layer of --model (16x256 ShareGPT calibration tokens) and time it")
    args = parser.parse_args(argv)
    with friendly_errors():
        torch.manual_seed(args.seed)
        if args.whole_model:
            return _time_whole_model(args)
        # A layer with correlated inputs (what real activations look like): GPTQ's advantage shows in
        # the output error, not in the weight error.
        n_in, n_out, n_tok = (128, 64, 512) if args.smoke else (576, 576, 4096)
        mix = torch.randn(n_in, n_in) / n_in**0.5
        X = torch.randn(n_tok, n_in) @ mix * torch.linspace(0.1, 3, n_in)
        W = torch.randn(n_out, n_in) * 0.05
        acc = HessianAccumulator(n_in)
        acc.add(X)
        spec = QuantSpec(args.bits, "group", args.group_size, symmetric=False)
        rows = []
        from ch06_quantization.rtn import quantize_rtn

        ref = (X @ W.T).pow(2).mean()
        rtn = quantize_rtn(W, spec).dequantize()
        rows.append({"method": "RTN", "output_rel_mse": float((X @ (W - rtn).T).pow(2).mean() / ref)})
        for act in (False, True):
            g = gptq_quantize_weight(W, acc.H, GPTQConfig(spec, act_order=act)).dequantize()
            rows.append({"method": f"GPTQ act_order={act}",
                         "output_rel_mse": float((X @ (W - g).T).pow(2).mean() / ref)})
        if not args.json:
            print_table(rows, title=f"one {n_out}x{n_in} layer, {spec.label()}", floatfmt=".3e")
        emit_json({"benchmark": "ch06.gptq_layer", "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
