"""Round-to-nearest post-training quantization (book 6.2.1): per-tensor, per-channel, group-wise;
symmetric and asymmetric; and :class:`QuantLinear`, which stores packed integers plus scales/zeros and
dequantizes in ``forward``.

One representation serves every method in this chapter (RTN, GPTQ, AWQ, the checkpoint writers):
unsigned integers ``q`` in ``[0, 2^bits - 1]``, an integer zero point ``z`` and a float scale ``s`` per
group, and ``w_hat = (q - z) * s``. Symmetric quantization is the special case ``z = 2^(bits-1)`` with
``s = absmax / (2^(bits-1) - 1)``, which is exactly how GPTQ checkpoints store symmetric weights.

Run ``python -m ch06_quantization.rtn --smoke`` for the error of each granularity on one real weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from common.cli import add_common_args, friendly_errors, make_parser
from common.report import emit_json, print_table

GRANULARITIES = ("tensor", "channel", "group")


@dataclass(frozen=True, slots=True)
class QuantSpec:
    """How to quantize a weight matrix ``W[out, in]``.

    ``granularity``: ``tensor`` (one scale), ``channel`` (one per output row) or ``group`` (one per
    ``group_size`` consecutive input columns of each row).
    """

    bits: int = 4
    granularity: str = "group"
    group_size: int = 128
    symmetric: bool = False

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 8:
            raise ValueError(f"bits must be between 2 and 8, got {self.bits}")
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {self.granularity!r}")
        if self.granularity == "group" and self.group_size < 2:
            raise ValueError(f"group_size must be >= 2, got {self.group_size}")

    @property
    def maxq(self) -> int:
        return (1 << self.bits) - 1

    def n_groups(self, in_features: int) -> int:
        if self.granularity != "group":
            return 1
        if in_features % self.group_size:
            raise ValueError(f"group size {self.group_size} does not divide in_features={in_features} "
                             f"(e.g. 576 = 9 x 64: use 64, not 128)")
        return in_features // self.group_size

    def label(self) -> str:
        g = {"tensor": "per-tensor", "channel": "per-channel"}.get(self.granularity, f"g{self.group_size}")
        return f"int{self.bits} {g} {'sym' if self.symmetric else 'asym'}"


def qparams(w: torch.Tensor, spec: QuantSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and integer zero point for each row of ``w`` (any ``[..., n]``: the last dim is one group).

    Returns ``scale``, ``zero`` of shape ``w.shape[:-1]`` (float, and float holding integers).
    """
    wmin = w.amin(dim=-1).clamp(max=0)
    wmax = w.amax(dim=-1).clamp(min=0)
    if spec.symmetric:
        half = 1 << (spec.bits - 1)
        scale = torch.maximum(wmax, -wmin) / (half - 1)
    else:
        scale = (wmax - wmin) / spec.maxq
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group: any scale works
    # Round the scale to fp16 now, as it will be stored, so fake-quant and QuantLinear agree exactly.
    scale = scale.clamp(min=1e-7).to(torch.float16).to(torch.float32)
    if spec.symmetric:
        zero = torch.full_like(scale, float(1 << (spec.bits - 1)))
    else:
        zero = torch.clamp(torch.round(-wmin / scale), 0, spec.maxq)
    return scale, zero


def quantize_with(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, maxq: int) -> torch.Tensor:
    """Integers ``clamp(round(w / s) + z, 0, maxq)``; ``scale``/``zero`` broadcast against ``w``."""
    return torch.clamp(torch.round(w / scale) + zero, 0, maxq)


def dequantize_with(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    return (q - zero) * scale


def _grouped(w: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """View ``W[out, in]`` as ``[S, G, n]`` so that ``qparams`` over the last dim gives the granularity."""
    out_f, in_f = w.shape
    if spec.granularity == "tensor":
        return w.reshape(1, 1, out_f * in_f)
    if spec.granularity == "channel":
        return w.reshape(out_f, 1, in_f)
    return w.reshape(out_f, spec.n_groups(in_f), spec.group_size)


@dataclass
class QuantizedWeight:
    """The integer form of ``W[out, in]``: ``q`` (uint8 holding ``bits``-bit values), ``scales``/``zeros``
    of shape ``[S, G]`` (S = 1 for per-tensor, else ``out``; G groups), optional ``g_idx[in]`` mapping each
    input column to its group (GPTQ act-order), and the spec."""

    q: torch.Tensor  # [out, in] uint8
    scales: torch.Tensor  # [S, G] float
    zeros: torch.Tensor  # [S, G] float holding integers
    spec: QuantSpec
    g_idx: torch.Tensor | None = None  # [in] int32

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(self.q, self.scales, self.zeros, self.spec, self.g_idx).to(dtype)


def dequantize(q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, spec: QuantSpec,
               g_idx: torch.Tensor | None = None) -> torch.Tensor:
    """``W_hat[out, in]`` from integers and per-group parameters."""
    out_f, in_f = q.shape
    qf = q.to(scales.dtype)
    if g_idx is not None:  # arbitrary column -> group map: gather the parameters per column
        s = scales[:, g_idx.long()]  # [S, in]
        z = zeros[:, g_idx.long()]
        return (qf - z) * s
    if spec.granularity == "tensor":
        return (qf - zeros.reshape(1, 1)) * scales.reshape(1, 1)
    g = scales.shape[1]
    return ((qf.reshape(out_f, g, in_f // g) - zeros[..., None]) * scales[..., None]).reshape(out_f, in_f)


def quantize_rtn(w: torch.Tensor, spec: QuantSpec) -> QuantizedWeight:
    """Round-to-nearest quantization of ``W[out, in]`` (computed in fp32)."""
    w = w.detach().float()
    out_f, in_f = w.shape
    wg = _grouped(w, spec)  # [S, G, n]
    scale, zero = qparams(wg, spec)  # [S, G]
    q = quantize_with(wg, scale[..., None], zero[..., None], spec.maxq)
    return QuantizedWeight(q.reshape(out_f, in_f).to(torch.uint8), scale, zero, spec)


def fake_quantize(w: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """Quantize then dequantize (same shape and dtype as ``w``): the error RTN introduces."""
    return quantize_rtn(w, spec).dequantize(w.dtype)


# ----------------------------------------------------------------------------- bit packing


def pack_bits(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack ``bits``-bit unsigned values (any shape, numel * bits divisible by 8) into a uint8 stream."""
    flat = q.reshape(-1).to(torch.uint8)
    if bits == 8:
        return flat.clone()
    if bits == 4:
        pairs = flat.reshape(-1, 2)
        return pairs[:, 0] | (pairs[:, 1] << 4)
    if flat.numel() * bits % 8:
        raise ValueError(f"{flat.numel()} values of {bits} bits do not fill whole bytes")
    shifts = torch.arange(bits, dtype=torch.uint8)
    bitplane = (flat[:, None] >> shifts) & 1  # [N, bits], little-endian bits
    stream = bitplane.reshape(-1, 8)  # [N*bits/8, 8]
    return (stream << torch.arange(8, dtype=torch.uint8)).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: ``numel`` uint8 values."""
    if bits == 8:
        return packed[:numel]
    if bits == 4:
        return torch.stack((packed & 0xF, packed >> 4), dim=1).reshape(-1)[:numel]
    stream = (packed[:, None] >> torch.arange(8, dtype=torch.uint8)) & 1  # [B, 8]
    bitplane = stream.reshape(-1, bits)[:numel]
    return (bitplane << torch.arange(bits, dtype=torch.uint8)).sum(dim=1, dtype=torch.uint8)


class QuantLinear(nn.Module):
    """A linear layer that keeps its weight as packed ``bits``-bit integers plus fp16 scales and integer
    zeros, and dequantizes the whole weight on every ``forward`` (weight-only quantization: the matmul
    itself runs in the activation dtype; a fused kernel would dequantize tile by tile instead)."""

    def __init__(self, qw: QuantizedWeight, bias: torch.Tensor | None = None,
                 scale_dtype: torch.dtype = torch.float16) -> None:
        super().__init__()
        self.out_features, self.in_features = qw.q.shape
        self.spec = qw.spec
        self.register_buffer("qweight", pack_bits(qw.q, qw.spec.bits))  # [out*in*bits/8] uint8
        self.register_buffer("scales", qw.scales.to(scale_dtype))  # [S, G]
        zero_dtype = torch.uint8  # zeros are integers in [0, 2^bits - 1]
        self.register_buffer("qzeros", qw.zeros.to(zero_dtype))  # [S, G]
        self.register_buffer("g_idx", None if qw.g_idx is None else qw.g_idx.to(torch.int32))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def quantized_weight(self) -> QuantizedWeight:
        q = unpack_bits(self.qweight, self.spec.bits, self.out_features * self.in_features)
        return QuantizedWeight(q.reshape(self.out_features, self.in_features), self.scales.float(),
                               self.qzeros.float(), self.spec, self.g_idx)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.quantized_weight().dequantize(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [..., in] -> [..., out]
        w = self.dequantized_weight(x.dtype)
        return nn.functional.linear(x, w, None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, {self.spec.label()}"

    @property
    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers())


# ----------------------------------------------------------------------------- whole models


def decoder_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` layers inside the decoder blocks (names contain ``layers.``): what weight-only
    methods quantize. Embeddings, the tied LM head and the norms stay in full precision."""
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and "layers." in n}


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def quantize_model_rtn(model: nn.Module, spec: QuantSpec) -> nn.Module:
    """Replace every decoder linear by a :class:`QuantLinear` holding its RTN quantization (in place)."""
    for name, lin in decoder_linears(model).items():
        set_module(model, name, QuantLinear(quantize_rtn(lin.weight, spec), lin.bias))
    return model


def relative_error(w: torch.Tensor, w_hat: torch.Tensor) -> float:
    """``||W - W_hat||_F / ||W||_F``."""
    return float((w.float() - w_hat.float()).norm() / w.float().norm().clamp(min=1e-30))


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch06_quantization.rtn", __doc__)
    add_common_args(parser)
    parser.add_argument("--tensor", default="model.layers.0.mlp.down_proj.weight", help="weight to quantize")
    args = parser.parse_args(argv)
    with friendly_errors():
        from ch06_quantization.formats import load_weights

        w = load_weights(args.model, names=[args.tensor])[args.tensor]
        rows = []
        for bits in (8, 4, 3):
            for gran in ("tensor", "channel", "group"):
                for sym in (True, False):
                    spec = QuantSpec(bits, gran, 64, sym)
                    rows.append({"spec": spec.label(), "rel_err": relative_error(w, fake_quantize(w, spec))})
        if not args.json:
            print_table(rows, title=f"RTN round-trip error on {args.tensor} {tuple(w.shape)}", floatfmt=".4f")
        emit_json({"tensor": args.tensor, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
