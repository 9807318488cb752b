"""Packed-weight GEMV on the CPU: int4 group-wise and int8 per-channel decode without dequantizing (book 6.2, 6.3.4).

``rtn.QuantLinear`` (what RTN, GPTQ and AWQ produce in this chapter) keeps its weights as integers but
dequantizes the whole matrix to fp32 in every ``forward``, so an int4 model decodes *slower* than fp32: it
reads the packed bytes, writes and re-reads 4 bytes a weight, then runs the fp32 matmul. A batch-1 decode
step reads every weight once, so bytes per weight should set its speed instead: int4 g64 is 0.5 B plus a
fp16 scale and a uint8 zero per 64 columns (0.55 B), int8 per channel 1 B, fp32 4 B.

:class:`PackedLinear` holds the same integers, scales and zero points (``w = (q - z) * s``; symmetric is
``z = 8`` or ``128``), re-laid out once for the kernel in ``csrc/qgemv.cpp``:

* weights in tiles of 16 rows (``TILE``), block of 32 columns by block, in steps of 64 bytes = 16 rows x 4
  bytes: int8 step ``i`` holds columns ``4i .. 4i + 3`` of the block, int4 step ``i`` holds columns ``8i + j``
  in its low nibbles and ``8i + 4 + j`` in its high ones. A register's 16 int32 lanes are then 16 weight rows:
  one load serves every activation row of a call and no row needs a horizontal sum;
* fp16 scales and uint8 zeros per row and group of G columns (G a multiple of 32, or K for per-channel),
  tiled the same way: (N/16, K/G, 16);
* GPTQ act-order (``g_idx``): columns sorted by group, and the kernel reads activation ``perm[k]`` for column k.

Activations are rounded to int8 per block of 32 (``sx = absmax / 127``) once per call and every block's dot
product is an exact int32 sum, ``sum_i xq_i (q_i - z)``, scaled by ``s * sx`` -- llama.cpp's Q4_0 x Q8_0
idea (AVX-512 VNNI ``vpdpbusd``; AVX2 ``maddubs``/``madd``; a scalar loop), with our own layout and zero
points. The path is fixed at build time from the CPU's flags (``common.cpu.simd_level``, capped by
``LLMIC_SIMD``: each level is its own build, see ``common.cpp_ext``).

``act_bits=16`` rounds the activations to int16 per block instead (``vpdpwssd`` / ``pmaddwd`` on the weights
widened to int16 with the zero subtracted; the zeros are stored as int16, which is how the kernel tells): ~256x
less activation rounding, so a model's greedy tokens stay with ``QuantLinear``'s fp32-activation ones where
int8 activations drift off them after a few tokens, at ~0.85x the batch-1 speed.

Up to ``max_rows`` rows (decode, a verification pass) take the kernel; longer inputs (a prefill, a
perplexity window) take ``F.linear`` on exactly ``QuantLinear``'s dequantized weight, so perplexities do not
move. ``cpu_decode.FusedDecoder`` runs whole decode steps on the same tensors.

    python -m ch06_quantization.cpu_qgemv            # the model's linears: fp32 vs int8 vs int4 g64 GEMV
    python -m ch06_quantization.cpu_qgemv --smoke
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ch06_quantization.cpu_gemv import gemv_problem
from ch06_quantization.rtn import QuantizedWeight, QuantLinear, QuantSpec, quantize_rtn

BLOCK = 32  # activation columns per int8 scale; the kernel's K step
ACT_BITS = (8, 16)  # what the kernel rounds activations to
TILE = 16   # weight rows per tile of the layout


def _module():
    from ch06_quantization.cpu_kernels import module

    return module()


def qgemv_path() -> str:
    """The path the kernel takes in this build: ``avx512_vnni``, ``avx2`` or ``scalar``."""
    return _module().qgemv_path()


def pack_weights(q: torch.Tensor, bits: int) -> torch.Tensor:
    """(N, K) integers -> the kernel's tiles: (N/16, K/32, 4, 64) uint8 for int4, (N/16, K/32, 8, 64) for int8.

    Step ``i`` of a block, byte ``4r + j``: int8 column ``4i + j`` of row ``r``; int4 column ``8i + j`` (low
    nibble) and ``8i + 4 + j`` (high nibble)."""
    n, k = q.shape
    t = q.to(torch.uint8).reshape(n // TILE, TILE, k // BLOCK, BLOCK // 4, 4).permute(0, 2, 3, 1, 4)  # (T, B, 8, 16, 4)
    if bits == 4:
        t = t[:, :, 0::2] | (t[:, :, 1::2] << 4)                                 # (T, B, 4, 16, 4)
    return t.reshape(n // TILE, k // BLOCK, -1, TILE * 4).contiguous()


def unpack_weights(p: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`pack_weights`: the kernel's tiles -> (N, K) uint8."""
    tiles, blocks, steps = p.shape[:3]
    t = p.reshape(tiles, blocks, steps, TILE, 4)
    if steps == 4:                                                                # int4: nibbles back to steps of 4
        t = torch.stack([t & 0x0F, t >> 4], dim=3).reshape(tiles, blocks, 8, TILE, 4)
    return t.permute(0, 3, 1, 2, 4).reshape(tiles * TILE, blocks * BLOCK)


def tile_rows(t: torch.Tensor) -> torch.Tensor:
    """Per-row parameters (N, K/G) -> the kernel's (N/16, K/G, 16)."""
    return t.reshape(-1, TILE, t.shape[1]).transpose(1, 2).contiguous()


def untile_rows(t: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`tile_rows`."""
    return t.transpose(1, 2).reshape(-1, t.shape[1])


def quantize_blocks(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 (or int16) per block of 32 of ``x (..., K)``: (integers (..., K), fp32 scales (..., K/32)),
    the kernel's rounding."""
    g = x.reshape(*x.shape[:-1], -1, BLOCK)
    amax = g.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(amax > 0, amax / float(2 ** (bits - 1) - 1), torch.ones_like(amax))
    q = torch.round(g * (1.0 / scale)).to(torch.int16 if bits == 16 else torch.int8)
    return q.reshape(x.shape), scale[..., 0]


def group_size(qw: QuantizedWeight) -> int:
    """Columns per scale of ``qw``: the spec's group size, or all of them per channel / per tensor."""
    return qw.spec.group_size if qw.spec.granularity == "group" else qw.q.shape[1]


def fits(qw: QuantizedWeight) -> str | None:
    """None when the kernel takes ``qw``, else why not (one phrase)."""
    k = qw.q.shape[1]
    if qw.spec.bits not in (4, 8):
        return f"{qw.spec.bits}-bit weights (the kernel has 4 and 8)"
    if k % BLOCK:
        return f"in_features {k} is not a multiple of {BLOCK}"
    if qw.q.shape[0] % TILE:
        return f"out_features {qw.q.shape[0]} is not a multiple of {TILE}"
    if group_size(qw) % BLOCK:
        return f"group size {group_size(qw)} is not a multiple of {BLOCK}"
    top = 16 if qw.spec.bits == 4 else 255   # int4: GPTQ's stored zero + 1 can be 16; the sums' bounds need <= 16
    if qw.zeros.numel() and (qw.zeros.min() < 0 or qw.zeros.max() > top):
        return f"zero points outside [0, {top}]"
    return None


class PackedLinear(nn.Module):
    """``QuantLinear``'s int4/int8 weights in the kernel's layout; ≤ ``max_rows`` rows run the C++ GEMV."""

    def __init__(self, qw: QuantizedWeight, bias: torch.Tensor | None = None, max_rows: int = 16,
                 act_bits: int = 8) -> None:
        super().__init__()
        problem = fits(qw)
        if problem:
            raise ValueError(f"the packed GEMV cannot take this weight: {problem}")
        if act_bits not in ACT_BITS:
            raise ValueError(f"act_bits must be one of {ACT_BITS}, not {act_bits}")
        self.act_bits = act_bits
        n, k = qw.q.shape
        self.out_features, self.in_features, self.bits, self.max_rows = n, k, qw.spec.bits, max_rows
        self.group = group_size(qw)
        scales, zeros = qw.scales.expand(n, -1), qw.zeros.expand(n, -1)  # per tensor: one row for all
        q, perm = qw.q, None
        if qw.g_idx is not None:  # act-order: sort the columns by group, the kernel gathers x by perm
            order = torch.argsort(qw.g_idx.long(), stable=True)
            if not torch.equal(qw.g_idx.long()[order], torch.arange(k) // self.group):
                raise ValueError("g_idx does not give every group exactly group_size columns")
            if not torch.equal(order, torch.arange(k)):
                q, perm = q[:, order], order.to(torch.int32)
        self.register_buffer("pq", pack_weights(q, self.bits))
        self.register_buffer("ps", tile_rows(scales.to(torch.float16)))  # (N/16, K/G, 16); fp16 values already
        # the zeros' dtype tells the kernel the activations' width: uint8 -> int8, int16 -> int16
        self.register_buffer("pz", tile_rows(zeros.to(torch.uint8 if act_bits == 8 else torch.int16)))
        self.register_buffer("perm", torch.empty(0, dtype=torch.int32) if perm is None else perm)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_quant_linear(cls, layer: QuantLinear, max_rows: int = 16, act_bits: int = 8) -> PackedLinear:
        return cls(layer.quantized_weight(), layer.bias, max_rows, act_bits)

    @classmethod
    def from_linear(cls, linear: nn.Linear, spec: QuantSpec, max_rows: int = 16, act_bits: int = 8) -> PackedLinear:
        """RTN-quantize an fp32 ``nn.Linear`` (e.g. the LM head) straight into the kernel's layout."""
        return cls(quantize_rtn(linear.weight, spec), linear.bias, max_rows, act_bits)

    def _kernel_order_q(self) -> torch.Tensor:
        return unpack_weights(self.pq).float()

    def dequantized_weight(self) -> torch.Tensor:
        """(N, K) fp32, element for element what ``QuantLinear.dequantized_weight`` gives: ``(q - z) * s``."""
        q = self._kernel_order_q()
        s = untile_rows(self.ps).float().repeat_interleave(self.group, dim=1)
        z = untile_rows(self.pz).float().repeat_interleave(self.group, dim=1)
        w = (q - z) * s
        if self.perm.numel():
            out = torch.empty_like(w)
            out[:, self.perm.long()] = w
            w = out
        return w

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The kernel's arithmetic in torch: activations rounded per block of 32 (int8 or int16, as the kernel),
        block sums exact in fp64."""
        x2 = x.reshape(-1, self.in_features)
        if self.perm.numel():
            x2 = x2[:, self.perm.long()]
        xq, sx = quantize_blocks(x2, self.act_bits)
        b = self.in_features // BLOCK
        z = untile_rows(self.pz).double().repeat_interleave(self.group, 1)
        q = (self._kernel_order_q().double() - z).reshape(self.out_features, b, BLOCK)
        sums = torch.einsum("mbi,nbi->mnb", xq.double().reshape(-1, b, BLOCK), q)  # exact integers
        sw = untile_rows(self.ps).double().repeat_interleave(self.group // BLOCK, dim=1)  # (N, blocks)
        y = (sums * sx.double()[:, None, :] * sw[None]).sum(-1).float()
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() // self.in_features > self.max_rows or x.dtype != torch.float32 or x.device.type != "cpu":
            return F.linear(x, self.dequantized_weight().to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))
        y = _module().qgemv(x, self.pq, self.ps, self.pz, self.perm)
        return y if self.bias is None else y + self.bias

    @property
    def nbytes(self) -> int:
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def extra_repr(self) -> str:
        g = "per-channel" if self.group == self.in_features else f"g{self.group}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, int{self.bits} {g} C++ GEMV, "
                f"int{self.act_bits} activations")


def use_packed(model: nn.Module, max_rows: int = 16, head: QuantSpec | None = None, act_bits: int = 8) -> int:
    """Replace every ``QuantLinear`` the kernel takes by a :class:`PackedLinear`, in place; return how many.

    ``head``: also RTN-quantize ``model.lm_head`` (an fp32 ``nn.Linear``, tied to the embedding, which stays
    fp32) with that spec -- the chapter's methods leave it in fp32, llama.cpp's Q4_0 files quantize it.
    ``act_bits``: 8 (fastest, llama.cpp's choice) or 16 (activations rounded ~256x finer: greedy tokens stay
    with ``QuantLinear``'s where int8 activations drift off them; about half the integer throughput).
    """
    problem = gemv_problem()
    if problem:
        raise ValueError(f"cannot build the packed GEMV: {problem}")
    _module()
    swaps = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, QuantLinear) and fits(child.quantized_weight()) is None]
    for parent, name, child in swaps:
        setattr(parent, name, PackedLinear.from_quant_linear(child, max_rows, act_bits))
    if head is not None and type(getattr(model, "lm_head", None)) is nn.Linear:
        model.lm_head = PackedLinear.from_linear(model.lm_head, head, max_rows, act_bits)
        swaps.append(None)
    return len(swaps)


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.model import LlamaModel
    from ch06_quantization.cpu_gemv import GemvLinear, time_linears
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch06_quantization.cpu_qgemv", __doc__)
    add_common_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        model = LlamaModel.from_pretrained(args.model, load_format=args.load_format).float().eval()
        plain = [m for m in model.modules() if isinstance(m, nn.Linear) and m.in_features % BLOCK == 0]
        plain = plain[: 14 if args.smoke else None]
        int8, int4 = QuantSpec(8, "channel", symmetric=True), QuantSpec(4, "group", 64)
        kinds = {"fp32 gemv": [GemvLinear(m, 32) for m in plain],
                 "int8 packed": [PackedLinear.from_linear(m, int8) for m in plain],
                 "int4 g64 packed": [PackedLinear.from_linear(m, int4) for m in plain]}
        rows = []
        for m_rows in (1, 4):
            t = {k: time_linears(v, m_rows, 2 if args.smoke else 5) for k, v in kinds.items()}
            rows.append({"rows": m_rows, **{f"{k} ms": 1e3 * v for k, v in t.items()},
                         "int8 vs fp32": t["fp32 gemv"] / t["int8 packed"],
                         "int4 vs fp32": t["fp32 gemv"] / t["int4 g64 packed"]})
        x = torch.randn(1, plain[0].in_features)
        with torch.inference_mode():
            ref = plain[0](x)
            err = ((kinds["int4 g64 packed"][0](x) - ref).norm() / ref.norm()).item()
        if not args.json:
            print_table(rows, title=f"{len(plain)} linears, one pass each, path {qgemv_path()}, "
                                    f"{torch.get_num_threads()} threads")
            print(f"relative error of int4 g64 vs fp32 on the first layer, one random row: {err:.4f}")
        emit_json({"linears": len(plain), "qgemv_path": qgemv_path(), "rows_1": rows[0], "rows_4": rows[1],
                   "int4_vs_fp32_1_row": rows[0]["int4 vs fp32"], "int8_vs_fp32_1_row": rows[0]["int8 vs fp32"],
                   "int4_rel_error_first_layer": err,
                   "hardware": stamp_dict(dtype="fp32+int4", torch_threads=torch.get_num_threads())})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
