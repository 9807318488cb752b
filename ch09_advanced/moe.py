"""Mixture of Experts (book 9.1): top-k router, SwiGLU experts, capacity factor, load-balance loss.

    python -m ch09_advanced.moe            # loop vs grouped routing, upcycled SmolLM2 on real text, Mixtral
    python -m ch09_advanced.moe --smoke

Two ways to run the same routing decision, which a test proves agree:
* ``forward_loop``: for each expert, find its tokens (``nonzero``), run the expert on them, scatter back.
  E small matmuls and E searches over all T*k assignments.
* ``forward_grouped``: sort the T*k assignments by expert once, pack them into a (E, C, H) buffer
  (C = capacity), run all experts as ONE batched matmul (``torch.bmm``, what grouped-GEMM kernels do on
  GPU), and un-permute. Padding slots cost compute; the capacity factor bounds them.

Capacity: expert e keeps at most ``C = ceil(capacity_factor * T * k / E)`` assignments, in token order;
the rest are dropped (their weight contributes nothing), as in Switch Transformer / GShard. ``None``
means no dropping (C = the busiest expert's load), what Mixtral-style inference does.

Load-balance loss (Switch Transformer, Fedus et al. 2021): ``E * sum_e f_e * P_e`` where f_e is the
fraction of assignments sent to e and P_e the mean router probability of e; 1.0 when perfectly uniform.

Upcycling (Komatsuzaki et al. 2022, "Sparse Upcycling"): each dense MLP of our ch04 model becomes E
copies plus small noise, with a fresh random router; top-k weights renormalised to sum 1 keep the output
close to the dense model's. The router is untrained, so the imbalance we measure on real text is that of
a random router on real hidden states, not of a trained MoE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from common.bench import stamp_dict, time_fn
from common.cli import (
    UsageError,
    add_common_args,
    friendly_errors,
    make_parser,
    positive_int,
    seed_everything,
)
from common.report import emit_json, print_table


@dataclass(slots=True)
class Routing:
    """One routing decision for T tokens and top-k experts."""

    expert_idx: torch.Tensor  # (T, k) long
    weight: torch.Tensor  # (T, k) float, renormalised over the k chosen; 0 where dropped
    keep: torch.Tensor  # (T, k) bool, False where the expert was over capacity
    probs: torch.Tensor  # (T, E) router softmax
    capacity: int
    aux_loss: torch.Tensor  # scalar load-balance loss

    def tokens_per_expert(self, num_experts: int) -> torch.Tensor:
        return torch.bincount(self.expert_idx[self.keep], minlength=num_experts)

    def imbalance(self, num_experts: int) -> float:
        """Busiest expert's load over the mean load (1.0 = perfectly balanced)."""
        counts = self.tokens_per_expert(num_experts).float()
        return float(counts.max() / counts.mean().clamp_min(1e-9))


def top_k_route(logits: torch.Tensor, k: int, capacity_factor: float | None = None) -> Routing:
    """logits (T, E) -> Routing. Ties in capacity are resolved in token order (earlier tokens win)."""
    t, e = logits.shape
    if not 1 <= k <= e:
        raise ValueError(f"top_k must be between 1 and the number of experts ({e}), got {k}")
    probs = torch.softmax(logits.float(), dim=-1)  # (T, E)
    top_p, idx = probs.topk(k, dim=-1)  # (T, k)
    weight = top_p / top_p.sum(-1, keepdim=True)
    onehot = F.one_hot(idx.reshape(-1), e)  # (T*k, E), token-major order
    if capacity_factor is None:
        capacity = int(onehot.sum(0).max()) if t else 0
        keep = torch.ones_like(idx, dtype=torch.bool)
    else:
        capacity = max(1, math.ceil(capacity_factor * t * k / e))
        position = (onehot.cumsum(0) * onehot).sum(-1) - 1  # (T*k,) rank of the assignment in its expert
        keep = (position < capacity).view(t, k)
    weight = weight * keep
    f = onehot.float().mean(0)  # fraction of assignments per expert (sums to 1)
    aux = e * (f * probs.mean(0)).sum()
    return Routing(idx, weight.to(logits.dtype), keep, probs, capacity, aux)


class MoELayer(nn.Module):
    """E SwiGLU experts behind a linear router. x (..., H) -> (..., H). ``last_routing`` keeps the last decision."""

    def __init__(self, hidden: int, intermediate: int, num_experts: int = 8, top_k: int = 2,
                 capacity_factor: float | None = None, grouped: bool = True) -> None:
        super().__init__()
        self.num_experts, self.top_k, self.capacity_factor, self.grouped = num_experts, top_k, capacity_factor, grouped
        self.router = nn.Linear(hidden, num_experts, bias=False)
        scale = 1 / math.sqrt(hidden)
        self.w_gate = nn.Parameter(torch.randn(num_experts, hidden, intermediate) * scale)  # (E, H, I)
        self.w_up = nn.Parameter(torch.randn(num_experts, hidden, intermediate) * scale)  # (E, H, I)
        self.w_down = nn.Parameter(torch.randn(num_experts, intermediate, hidden) / math.sqrt(intermediate))
        self.last_routing: Routing | None = None

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """x (n, H) through expert e -> (n, H)."""
        return (F.silu(x @ self.w_gate[e]) * (x @ self.w_up[e])) @ self.w_down[e]

    def route(self, x2: torch.Tensor) -> Routing:
        return top_k_route(self.router(x2), self.top_k, self.capacity_factor)

    def forward_loop(self, x2: torch.Tensor, r: Routing) -> torch.Tensor:
        out = torch.zeros_like(x2)  # (T, H)
        for e in range(self.num_experts):
            tok, slot = torch.nonzero((r.expert_idx == e) & r.keep, as_tuple=True)
            if tok.numel():
                out.index_add_(0, tok, self.expert(e, x2[tok]) * r.weight[tok, slot, None])
        return out

    def forward_grouped(self, x2: torch.Tensor, r: Routing) -> torch.Tensor:
        t, h = x2.shape
        flat_e = r.expert_idx.reshape(-1)  # (T*k,)
        flat_keep = r.keep.reshape(-1)
        order = torch.argsort(flat_e * 2 + (~flat_keep), stable=True)  # by expert, kept ones first
        counts = torch.bincount(flat_e, minlength=self.num_experts)
        starts = torch.cumsum(counts, 0) - counts
        sorted_e = flat_e[order]
        rank = torch.arange(order.numel(), device=x2.device) - starts[sorted_e]  # position within its expert
        valid = flat_keep[order] & (rank < r.capacity)
        order, sorted_e, rank = order[valid], sorted_e[valid], rank[valid]
        cap = max(r.capacity, 1)
        packed = x2.new_zeros(self.num_experts, cap, h)  # (E, C, H)
        packed[sorted_e, rank] = x2[order // self.top_k]
        y = torch.bmm(F.silu(torch.bmm(packed, self.w_gate)) * torch.bmm(packed, self.w_up), self.w_down)  # (E, C, H)
        contrib = y[sorted_e, rank] * r.weight.reshape(-1)[order, None]  # (n_kept, H)
        return x2.new_zeros(t, h).index_add_(0, order // self.top_k, contrib)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])  # (T, H)
        r = self.route(x2)
        self.last_routing = r
        out = self.forward_grouped(x2, r) if self.grouped else self.forward_loop(x2, r)
        return out.view(shape)

    @classmethod
    def upcycle(cls, mlp: nn.Module, num_experts: int, top_k: int, noise: float = 0.01,
                capacity_factor: float | None = None) -> MoELayer:
        """E copies of a ch04 SwiGLU ``MLP`` (nn.Linear weights are (out, in), ours (in, out)) plus noise."""
        hidden, inter = mlp.gate_proj.in_features, mlp.gate_proj.out_features
        layer = cls(hidden, inter, num_experts, top_k, capacity_factor)
        with torch.no_grad():
            for dst, src in ((layer.w_gate, mlp.gate_proj), (layer.w_up, mlp.up_proj), (layer.w_down, mlp.down_proj)):
                w = src.weight.t()
                dst.copy_(w.expand_as(dst) + noise * w.std() * torch.randn_like(dst))
            nn.init.normal_(layer.router.weight, std=0.02)
        return layer.to(mlp.gate_proj.weight.dtype)


def upcycle_model(model: nn.Module, num_experts: int = 4, top_k: int = 2, noise: float = 0.01) -> list[MoELayer]:
    """Replace every ``layer.mlp`` of a ch04 LlamaModel by an upcycled MoE layer, in place."""
    moes = []
    for layer in model.layers:
        layer.mlp = MoELayer.upcycle(layer.mlp, num_experts, top_k, noise)
        moes.append(layer.mlp)
    return moes


def mixtral_numbers() -> dict:
    """Mixtral-8x7B through the ch02 calculator: total vs active parameters and bf16 weight memory."""
    from ch02_gpu.estimate import MemoryRequest, estimate
    from ch02_gpu.vram import load_arch

    e = estimate(load_arch("mixtral-8x7b"), MemoryRequest(weight_dtype="bf16", context=4096))
    return {"mixtral_params_b": e.params / 1e9, "mixtral_active_params_b": e.active_params / 1e9,
            "mixtral_weights_gib_bf16": e.weights_bytes / 2**30,
            "mixtral_decode_gflop_per_token": 2 * e.active_params / 1e9,
            "mixtral_ep8_all_to_all_mb_per_layer_4096_tokens":
                expert_parallel(4096, 4096, 2, 8, 8)["all_to_all_bytes_per_layer"] / 1e6}


def expert_parallel(tokens: int, hidden: int, top_k: int, num_experts: int, ep: int, bytes_per_el: int = 2) -> dict:
    """Arithmetic of expert parallelism over ``ep`` GPUs for one MoE layer and a batch of ``tokens``.

    Each token's hidden state goes to its k experts (dispatch all-to-all) and comes back weighted (combine);
    with uniform routing a fraction (ep - 1) / ep of those copies cross GPUs.
    """
    if num_experts % ep:
        raise ValueError(f"{num_experts} experts do not split evenly over {ep} GPUs")
    remote = (ep - 1) / ep
    per_layer = 2 * tokens * top_k * hidden * bytes_per_el * remote  # dispatch + combine, whole system
    return {"experts_per_gpu": num_experts // ep, "all_to_all_bytes_per_layer": per_layer,
            "all_to_all_bytes_per_layer_per_gpu": per_layer / ep}


def compare_routing(tokens: int, hidden: int, inter: int, experts: int, top_k: int, repeats: int) -> dict:
    layer = MoELayer(hidden, inter, experts, top_k).eval()
    x = torch.randn(tokens, hidden)
    with torch.no_grad():
        r = layer.route(x)
        diff = float((layer.forward_loop(x, r) - layer.forward_grouped(x, r)).abs().max())
        t_loop = time_fn(lambda: layer.forward_loop(x, r), repeats=repeats)
        t_grp = time_fn(lambda: layer.forward_grouped(x, r), repeats=repeats)
    return {"tokens": tokens, "loop_ms": t_loop.median * 1e3, "grouped_ms": t_grp.median * 1e3,
            "moe_grouped_vs_loop": t_loop.median / t_grp.median, "loop_vs_grouped_max_abs_diff": diff}


def upcycled_run(n_tokens: int, num_experts: int, top_k: int) -> dict:
    """Upcycle the embedded model, run it on real text, report routing imbalance and output drift."""
    from ch04_kvcache.model import LlamaModel
    from common.datasets import eval_token_ids
    from common.loader import load_tokenizer

    model = LlamaModel.from_pretrained("smollm2-135m").eval()
    ids = torch.tensor([eval_token_ids(load_tokenizer(), n_tokens)])  # (1, T)
    with torch.no_grad():
        dense = model(ids)
        moes = upcycle_model(model, num_experts, top_k)
        sparse = model(ids)
    imb = [m.last_routing.imbalance(num_experts) for m in moes]
    aux = [float(m.last_routing.aux_loss) for m in moes]
    agree = float((dense.argmax(-1) == sparse.argmax(-1)).float().mean())
    return {"upcycle_tokens": n_tokens, "upcycle_experts": num_experts, "upcycle_top_k": top_k,
            "upcycle_imbalance_mean": sum(imb) / len(imb), "upcycle_imbalance_max": max(imb),
            "upcycle_aux_loss_mean": sum(aux) / len(aux), "upcycle_argmax_agreement": agree,
            "_per_layer": [{"layer": i, "max/mean load": imb[i], "aux loss": aux[i]} for i in range(len(imb))]}


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch09_advanced.moe", __doc__)
    add_common_args(parser, model=False)
    parser.add_argument("--experts", type=positive_int, default=4, help="experts per upcycled layer")
    parser.add_argument("--top-k", type=positive_int, default=2, help="experts per token")
    parser.add_argument("--tokens", type=positive_int, default=300, help="real-text tokens for the upcycled run")
    args = parser.parse_args(argv)
    with friendly_errors():
        seed_everything(args.seed)
        if args.top_k > args.experts:
            raise UsageError("--top-k must not exceed --experts.")
        cmp = compare_routing(256 if args.smoke else 1024, 256, 512, 8, 2, 2 if args.smoke else 5)
        up = upcycled_run(64 if args.smoke else args.tokens, args.experts, args.top_k)
        per_layer = up.pop("_per_layer")
        out = {**cmp, **up, **mixtral_numbers(), "hardware": stamp_dict(dtype="fp32")}
        if not args.json:
            print_table(per_layer[:: max(1, len(per_layer) // 8)], title="upcycled SmolLM2: routing imbalance")
            print_table([{"figure": k, "value": v} for k, v in out.items() if k != "hardware"], title="MoE")
        emit_json(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
