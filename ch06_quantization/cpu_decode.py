"""The whole decode step in one C++ call: fused layers on the CPU, fp32, int8 or int4 weights (book 6.2; 7.4.2; 9.3).

``cpu_gemv`` made each linear stream its weights at memory speed, yet a batch-1 decode step of the
embedded model still spends ~10 ms outside the linears: about 1,200 small eager ops per token (RMSNorm is
five of them, RoPE eight, the KV write two, ...), each paying PyTorch's dispatch. That fixed cost is why
an int8 draft model is not 4x cheaper than its fp32 target (ch07) and why eager decode stays at half of
llama.cpp's speed (ch09). This file removes it the way llama.cpp does: one native function runs every
layer for the new tokens,

    x = embed[ids]
    per layer:  h = rmsnorm(x);  qkv = W_qkv h;  rope(q, k);  cache[pos] = k, v;  a = attend(q, cache)
                x += W_o a;  h = rmsnorm(x);  gu = W_gate|up h;  x += W_down (silu(g) * u)
    logits = W_head rmsnorm(x[-keep:])

with q/k/v and gate/up packed into one matrix each (one pass over the activations instead of three or
two), the residual adds folded into the GEMVs, and the GEMVs themselves from ``cpu_packed`` (fp32 in a
one-stream-per-thread layout), ``cpu_gemv`` (int8 widened in registers), ``cpu_w8a8`` or ``cpu_qgemv``
(int4 group-wise / int8 per-channel weights times int8 activations, VNNI where the CPU has it). Python is
entered once per step instead of ~1,200 times.

:class:`FusedDecoder` wraps a ``LlamaModel`` (fp32 linears, or the int8 ``GemvLinear`` layers of
``cpu_gemv.use_gemv(model, bits=8)``) and is called like one: ``decoder(ids, cache=ContiguousKVCache,
logits_to_keep=k)``. It writes K/V into the same ``ContiguousKVCache`` the model uses, so a long prompt
can go through the model (a GEMM is better there) and the decode steps through the fused path.
Anything it does not handle (more than ``max_rows`` new tokens, batch > 1, explicit positions, other
caches) goes to the wrapped model unchanged. Tests hold it to the model's logits. The step is C++ in
``csrc/decode.cpp``, built with ch06's other kernels (``cpu_kernels``).

    python -m ch06_quantization.cpu_decode           # decode tok/s: eager, eager + GEMV, fused fp32, int8, int4
    python -m ch06_quantization.cpu_decode --smoke
"""

from __future__ import annotations

import torch
from torch import nn

from ch04_kvcache.kv_cache import ContiguousKVCache
from ch04_kvcache.model import LlamaModel
from ch06_quantization.cpu_packed import can_pack, pack_rows


def _module():
    from ch06_quantization.cpu_kernels import module

    return module()


def _adjacent(parts: list[torch.Tensor]) -> torch.Tensor | None:
    """The (sum of rows, ...) view spanning ``parts`` if they already lie back to back in one storage."""
    first = parts[0]
    end = first.data_ptr()
    for t in parts:
        if not t.is_contiguous() or t.untyped_storage().data_ptr() != first.untyped_storage().data_ptr() \
                or t.data_ptr() != end:
            return None
        end += t.numel() * t.element_size()
    return first.as_strided((sum(t.shape[0] for t in parts), *first.shape[1:]), first.stride())


def _concat(parts: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``parts`` concatenated along rows (no copy when a previous packing left them adjacent), and each
    part as a view of the result."""
    packed = _adjacent(parts)
    if packed is None:
        packed = (torch.cat(parts) if len(parts) > 1 else parts[0]).contiguous()
    views, start = [], 0
    for t in parts:
        views.append(packed[start:start + t.shape[0]])
        start += t.shape[0]
    return packed, views


def _pack(linears: list[nn.Module]) -> list[torch.Tensor]:
    """[weight, scale, zero, perm] of the row-wise concatenation of ``linears`` (what a kind lacks: empty).

    The layers' own tensors are then re-pointed at views of the packed storage, so packing costs no
    extra memory, the wrapped model keeps computing with exactly the same numbers, and packing the same
    layers again (a self-draft made of the target's first blocks) finds them adjacent and copies nothing.
    """
    from ch06_quantization.cpu_gemv import GemvLinear
    from ch06_quantization.cpu_qgemv import PackedLinear
    from ch06_quantization.cpu_w8a8 import W8A8Linear

    empty = torch.empty(0)
    if all(type(m) is nn.Linear for m in linears):
        w, views = _concat([m.weight.detach() for m in linears])
        for m, v in zip(linears, views, strict=True):
            m.weight.data = v
        return [w, empty, empty, empty]
    if all(isinstance(m, GemvLinear) and m.bits == 32 for m in linears):
        w, views = _concat([m.weight for m in linears])
        for m, v in zip(linears, views, strict=True):
            m.weight = v
        return [w, empty, empty, empty]
    packed_q = all(isinstance(m, PackedLinear) for m in linears)
    if packed_q and len({(m.bits, m.group, m.in_features, m.act_bits) for m in linears}) > 1:
        raise ValueError("the fused decoder packs PackedLinear layers of one bit width, group size and activation "
                         "width together")
    if packed_q and any(not torch.equal(m.perm, linears[0].perm) for m in linears):
        raise ValueError("the fused decoder packs act-order layers together only when their column orders agree")
    w8a8 = all(isinstance(m, W8A8Linear) for m in linears)
    if packed_q or w8a8 or all(isinstance(m, GemvLinear) and m.bits == 8 for m in linears):
        packed = []
        for attr in ("pq", "ps", "pz") if packed_q else ("wq", "sw") if w8a8 else ("q", "scale", "zero"):
            t, views = _concat([getattr(m, attr) for m in linears])
            for m, v in zip(linears, views, strict=True):
                setattr(m, attr, v)
            packed.append(t)
        if packed_q:
            packed.append(linears[0].perm)
        return packed + [empty] * (4 - len(packed))
    kinds = sorted({type(m).__name__ + (f"({m.bits}-bit)" if isinstance(m, GemvLinear) else "") for m in linears})
    raise ValueError(f"the fused decoder runs fp32 nn.Linear, cpu_gemv.GemvLinear, cpu_w8a8.W8A8Linear or "
                     f"cpu_qgemv.PackedLinear layers of one kind, not {', '.join(kinds)}")


def fused_decode_problem() -> str | None:
    """None when the fused decoder can be built here, else one sentence saying what is missing."""
    from ch06_quantization.cpu_gemv import gemv_problem

    return gemv_problem()


class FusedDecoder(nn.Module):
    """A ``LlamaModel`` whose batch-1 steps of up to ``max_rows`` new tokens run as one C++ call.

    ``packed=True`` keeps the fp32 matrices in ``cpu_packed``'s layout, a copy (the model's own weights
    stay for long prompts) that streams faster; ``reuse=`` another decoder whose packed copies this one
    may share (a self-draft made of the target's first blocks copies nothing).

    Called like the model: ``forward(input_ids (1, T), cache=ContiguousKVCache, logits_to_keep=k)`` ->
    logits (1, k or T, V). Every other call (no cache, batch > 1, more tokens, explicit positions)
    goes to the wrapped model, which shares the weights and the cache layout.
    """

    def __init__(self, model: LlamaModel, max_rows: int = 16, packed: bool = True,
                 reuse: FusedDecoder | None = None) -> None:
        super().__init__()
        cfg = model.config
        p = model.embed_tokens.weight
        if p.dtype != torch.float32 or p.device.type != "cpu":
            raise ValueError(f"the fused decoder runs fp32 models on the CPU, not {p.dtype} on {p.device}")
        if cfg.qkv_bias or cfg.o_bias:
            raise ValueError("the fused decoder handles bias-free Llama layers only (this config has biases)")
        problem = fused_decode_problem()
        if problem:
            raise ValueError(f"cannot build the fused decoder: {problem}")
        self.model, self.max_rows = model, max_rows
        tensors: list[torch.Tensor] = []
        for layer in model.layers:
            a, mlp = layer.self_attn, layer.mlp
            tensors += [layer.input_layernorm.weight.detach().contiguous(), *_pack([a.q_proj, a.k_proj, a.v_proj]),
                        *_pack([a.o_proj]), layer.post_attention_layernorm.weight.detach().contiguous(),
                        *_pack([mlp.gate_proj, mlp.up_proj]), *_pack([mlp.down_proj])]
        tensors += [model.norm.weight.detach().contiguous(), *_pack([model.lm_head])]
        self._packed_copies: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}  # (data_ptr, shape) -> packed copy
        if packed:  # fp32 matrices in cpu_packed's layout: a copy, but one sequential stream per thread
            for i, t in enumerate(tensors):
                if can_pack(t):
                    key = (t.data_ptr(), tuple(t.shape))
                    shared = reuse._packed_copies.get(key) if reuse is not None else None
                    tensors[i] = self._packed_copies[key] = shared if shared is not None else pack_rows(t)
        self._tensors = tensors
        self._embed = model.embed_tokens.weight.detach()
        self._inv_freq = model.rotary.inv_freq.float().contiguous()
        _module()  # build (or load) the kernels now, not inside the first timed step

    @property
    def config(self):
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None, cache=None,
                logits_to_keep: int = 0) -> torch.Tensor:
        b, t = input_ids.shape
        if type(cache) is not ContiguousKVCache or positions is not None or b != 1 or t > self.max_rows:
            return self.model(input_ids, positions=positions, cache=cache, logits_to_keep=logits_to_keep)
        start = cache.length
        cache.check_room(start + t)
        keep = t if logits_to_keep <= 0 else min(logits_to_keep, t)
        logits = _module().decode_forward(input_ids[0].long(), start, keep, self._tensors, self._embed,
                                          self._inv_freq, cache.k, cache.v, self.config.num_heads,
                                          self.config.rms_norm_eps)
        cache.length = start + t  # what cache.advance(step) does after the model's own forward
        return logits[None]


def fused_int8(model: LlamaModel) -> FusedDecoder:
    """``model`` (changed in place: its linears become int8 ``GemvLinear``) behind a :class:`FusedDecoder`."""
    from ch06_quantization.cpu_gemv import use_gemv

    use_gemv(model, bits=8)
    return FusedDecoder(model)


def fused_w8a8(model: LlamaModel) -> FusedDecoder:
    """``model`` (changed in place: its linears become ``cpu_w8a8.W8A8Linear``) behind a :class:`FusedDecoder`."""
    from ch06_quantization.cpu_w8a8 import use_w8a8

    use_w8a8(model)
    return FusedDecoder(model)


def fused_int4(model: LlamaModel, group: int = 64, head: bool = True) -> FusedDecoder:
    """``model`` (changed in place: its linears, and with ``head`` the LM head, become int4 RTN group-wise
    ``cpu_qgemv.PackedLinear``) behind a :class:`FusedDecoder`."""
    from ch06_quantization.cpu_qgemv import use_packed
    from ch06_quantization.rtn import QuantSpec, quantize_model_rtn

    spec = QuantSpec(4, "group", group)
    use_packed(quantize_model_rtn(model, spec), head=spec if head else None)
    return FusedDecoder(model)


def fast_decoder(model: nn.Module, act_bits: int = 16) -> nn.Module:
    """The fastest batch-1 decoder this chapter has for ``model``, sharing its weights (book 6.6.2).

    ``QuantLinear`` layers the packed GEMV takes become ``PackedLinear`` (in place: same prefill numbers),
    then the whole step goes to a :class:`FusedDecoder` when every matrix is of a kind it runs; otherwise the
    model itself (its quantized linears still use the kernel). bf16 or library models come back unchanged.
    ``act_bits`` 16 (the default) rounds activations to int16 per block: greedy tokens stay ``QuantLinear``'s,
    and a batch-1 step reads memory, not arithmetic, so it costs nothing measurable with VNNI (AVX2: ~0.8x);
    8 is llama.cpp's choice (Q8 activations), slightly faster on AVX2, tokens drift after a few dozen.
    """
    from ch06_quantization.cpu_qgemv import use_packed

    if not isinstance(model, LlamaModel) or fused_decode_problem() is not None:
        return model
    if model.embed_tokens.weight.dtype != torch.float32:
        return model
    plain = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    if any(type(w.data) is not torch.Tensor or w.dtype != torch.float32 for w in plain):
        return model  # a library's tensor subclass (torchao, bitsandbytes): its own kernels, eager
    use_packed(model, act_bits=act_bits)
    try:
        return FusedDecoder(model)
    except ValueError:
        return model


def bench_model(model: str, load_format: str = "auto", smoke: bool = False) -> LlamaModel:
    """The fp32 model a kernel benchmark runs on: ``--smoke`` keeps its first 4 blocks (plumbing only)."""
    m = LlamaModel.from_pretrained(model, load_format=load_format).float().eval()
    if smoke:
        m.layers = m.layers[:4]
    return m


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.generate import generate
    from ch06_quantization.cpu_gemv import use_gemv
    from common.bench import mbu, measure_read_bandwidth, stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch06_quantization.cpu_decode", __doc__)
    add_common_args(parser)
    parser.add_argument("--new-tokens", type=positive_int, default=48, help="greedy tokens to decode")
    args = parser.parse_args(argv)
    with friendly_errors():
        problem = fused_decode_problem()
        if problem:
            raise ValueError(f"cannot build the fused decoder: {problem}")

        def load() -> LlamaModel:
            return bench_model(args.model, args.load_format, args.smoke)

        n_new = 8 if args.smoke else args.new_tokens
        prompt = [1, 504, 3458, 282, 4649, 314, 2030, 47]
        base = load()
        bytes_fp32 = sum(p.numel() * p.element_size() for p in base.parameters())  # tied head counted once
        gemv_model = load()
        use_gemv(gemv_model, bits=32)
        candidates = {"eager, F.linear": (base, bytes_fp32), "eager, C++ GEMV": (gemv_model, bytes_fp32),
                      "fused fp32": (FusedDecoder(load()), bytes_fp32)}
        int8 = fused_int8(load())
        # bytes a step reads: every packed tensor (int8 linears and LM head, their scales, fp32 norms); the
        # embedding contributes one row
        candidates["fused int8"] = (int8, sum(b.numel() * b.element_size() for b in int8._tensors))
        int4 = fused_int4(load())
        candidates["fused int4 g64"] = (int4, sum(b.numel() * b.element_size() for b in int4._tensors))
        mb = 64 if args.smoke else 256
        bw = measure_read_bandwidth(megabytes=mb, repeats=3)  # again after the timings: the best of the two
        rows, ref = [], None
        for name, (m, nbytes) in candidates.items():
            generate(m, prompt, 4, eos_token_id=None)  # warm-up
            r = generate(m, prompt, n_new, eos_token_id=None)
            ref = ref or r.token_ids
            tok_s = r.timings.decode_tokens_per_s
            rows.append({"decode": name, "tok/s": tok_s, "weights MB read": nbytes / 1e6,
                         "GB/s": nbytes * tok_s / 1e9, "same tokens as F.linear": r.token_ids == ref})
        bw = max(bw, measure_read_bandwidth(megabytes=mb, repeats=3))  # this machine's bandwidth drifts by minutes
        for row in rows:
            row["MBU"] = mbu(row["weights MB read"] * 1e6, row["tok/s"], bw)
        if not args.json:
            print_table(rows, title=f"batch-1 greedy decode, {len(base.layers)} layers, {n_new} tokens, "
                                    f"read bandwidth {bw / 1e9:.1f} GB/s, {torch.get_num_threads()} threads")
        by = {r["decode"]: r for r in rows}
        emit_json({"layers": len(base.layers), "new_tokens": n_new, "read_bandwidth_gb_s": bw / 1e9,
                   "tok_s": {r["decode"]: r["tok/s"] for r in rows},
                   "fused_fp32_vs_eager": by["fused fp32"]["tok/s"] / by["eager, F.linear"]["tok/s"],
                   "fused_fp32_mbu": by["fused fp32"]["MBU"],
                   "fused_int8_vs_fused_fp32": by["fused int8"]["tok/s"] / by["fused fp32"]["tok/s"],
                   "fused_int4_vs_fused_fp32": by["fused int4 g64"]["tok/s"] / by["fused fp32"]["tok/s"],
                   "fp32_tokens_identical": all(r["same tokens as F.linear"] for r in rows[:3]),
                   "hardware": stamp_dict(dtype="fp32", torch_threads=torch.get_num_threads())})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
