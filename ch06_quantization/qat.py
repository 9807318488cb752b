"""Quantization-aware training in miniature (book 6.2.2): fake-quant with straight-through gradients.

The forward pass uses the quantized weight ``Q(w)``; the backward pass pretends ``Q`` is the identity
(straight-through estimator): ``w_q = w + (Q(w) - w).detach()``. The float "shadow" weights keep
learning, and the network learns weights that survive rounding. Demonstration: a two-layer MLP student
must imitate a teacher; we compare (a) the float student quantized after training (PTQ, RTN) with
(b) the same student fine-tuned for a few steps with fake-quant (QAT), at 2 and 3 bits per-channel.

Trade-off (the book's point): QAT recovers most of the low-bit loss, but it needs the training pipeline,
data and optimizer state (about 3-4x the weights' memory in fp32 Adam) -- for LLMs usually out of reach
at inference time, which is why GPTQ/AWQ (minutes, a few hundred samples) dominate deployment.

Run ``python -m ch06_quantization.qat [--smoke]``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from ch06_quantization.rtn import QuantSpec, fake_quantize
from common.bench import stamp_dict
from common.cli import add_common_args, friendly_errors, make_parser, seed_everything
from common.report import emit_json, print_table


def ste_quantize(w: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Forward: ``Q(w)``; backward: identity (the straight-through estimator)."""
    return w + (fake_quantize(w.detach(), spec) - w).detach()


class FakeQuantLinear(nn.Linear):
    """``nn.Linear`` whose forward sees the fake-quantized weight when ``spec`` is set."""

    spec: QuantSpec | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight if self.spec is None else ste_quantize(self.weight, self.spec)
        return nn.functional.linear(x, w, self.bias)


def mlp(d: int, h: int) -> nn.Sequential:
    return nn.Sequential(FakeQuantLinear(d, h), nn.GELU(), FakeQuantLinear(h, d))


def set_spec(model: nn.Module, spec: QuantSpec | None) -> None:
    for m in model.modules():
        if isinstance(m, FakeQuantLinear):
            m.spec = spec


def train(model: nn.Module, teacher: nn.Module, steps: int, lr: float, d: int, batch: int = 256) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        x = torch.randn(batch, d)
        with torch.no_grad():
            y = teacher(x)
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


@torch.no_grad()
def eval_mse(model: nn.Module, teacher: nn.Module, x: torch.Tensor) -> float:
    return float(nn.functional.mse_loss(model(x), teacher(x)))


@dataclass
class QATResult:
    bits: int
    float_mse: float
    ptq_mse: float
    qat_mse: float


def run(bits: int, d: int = 64, h: int = 256, float_steps: int = 400, qat_steps: int = 200,
        seed: int = 0) -> QATResult:
    torch.manual_seed(seed)
    teacher = nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, d))
    student = mlp(d, h)
    train(student, teacher, float_steps, 3e-3, d)
    x_test = torch.randn(2048, d)
    spec = QuantSpec(bits, "channel", symmetric=True)
    longer = copy.deepcopy(student)  # float baseline with the same total training budget as QAT
    train(longer, teacher, qat_steps, 1e-3, d)
    float_mse = eval_mse(longer, teacher, x_test)
    set_spec(student, spec)  # PTQ: the same weights, rounded
    ptq_mse = eval_mse(student, teacher, x_test)
    train(student, teacher, qat_steps, 1e-3, d)  # QAT: keep training through the rounding
    return QATResult(bits, float_mse, ptq_mse, eval_mse(student, teacher, x_test))


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch06_quantization.qat", __doc__)
    add_common_args(parser, model=False)
    args = parser.parse_args(argv)
    with friendly_errors():
        seed_everything(args.seed)
        steps = (150, 80) if args.smoke else (600, 300)
        rows = [vars(run(b, float_steps=steps[0], qat_steps=steps[1], seed=args.seed)) for b in (2, 3, 4)]
        if not args.json:
            print_table(rows, title="MLP student vs teacher: test MSE (per-channel symmetric weights)",
                        floatfmt=".3e")
        emit_json({"benchmark": "ch06.qat", "rows": rows, "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
