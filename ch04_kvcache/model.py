"""A from-scratch Llama-family decoder (book 4.1): RMSNorm, RoPE, GQA, SwiGLU, tied embeddings.

It loads a Hugging Face safetensors folder directly (``safetensors``, no ``transformers`` model) and
matches ``transformers`` logits in fp32. Attention takes a cache object:

* ``model(ids)``: no cache, attend over the T tokens given (recompute everything each step);
* ``model(ids, cache=ContiguousKVCache(...))`` (or ``Int8KVCache``): append K/V, attend over the cache;
* ``model.forward_batch(ids, positions, paged_cache, meta)``: a flattened variable-length batch whose K/V
  live in a paged cache (``paged_attention.py``), what the continuous-batching engine of chapter 5 runs.

    python -m ch04_kvcache.model --prompt "What is the capital of France?"
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ch04_kvcache.config import ModelConfig
from ch04_kvcache.kv_cache import ContiguousKVCache, Step
from ch04_kvcache.paged_attention import AttentionMetadata, build_plan, paged_attention
from ch04_kvcache.paged_cache import PagedKVCache


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype  # normalise in fp32 like the reference, then scale in the model dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


def rope_inv_freq(cfg: ModelConfig) -> torch.Tensor:
    """(D/2,) inverse frequencies theta^(-2i/D), rescaled as the config's rope_scaling asks."""
    d = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    sc = cfg.rope_scaling
    if not sc or sc["rope_type"] == "default":
        return inv
    if sc["rope_type"] == "linear":
        return inv / float(sc["factor"])
    # Llama 3: long wavelengths divided by factor, short ones kept, a smooth ramp in between.
    factor, lo, hi = float(sc["factor"]), float(sc["low_freq_factor"]), float(sc["high_freq_factor"])
    old_ctx = float(sc["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > old_ctx / lo, inv / factor, inv)
    smooth = (old_ctx / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old_ctx / hi) & ~(wavelen > old_ctx / lo)
    return torch.where(medium, smoothed, scaled)


class Rotary(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.register_buffer("inv_freq", rope_inv_freq(cfg), persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """positions (...,) -> cos, sin (..., D), computed in fp32."""
        freqs = positions[..., None].float() * self.inv_freq  # (..., D/2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + D/2) of x (..., D) by the position's angle (the "rotate half" layout HF uses)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.h, self.hkv, self.d = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, self.h * self.d, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, self.hkv * self.d, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, self.hkv * self.d, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(self.h * self.d, cfg.hidden_size, bias=cfg.o_bias)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache, step: Step | None
                ) -> torch.Tensor:
        """x (B, T, hidden); cos/sin (B, T, D) -> (B, T, hidden)."""
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.h, self.d).transpose(1, 2)  # (B, H, T, D)
        k = self.k_proj(x).view(b, t, self.hkv, self.d).transpose(1, 2)  # (B, Hkv, T, D)
        v = self.v_proj(x).view(b, t, self.hkv, self.d).transpose(1, 2)
        cos, sin = cos[:, None], sin[:, None]  # broadcast over heads
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1, enable_gqa=self.h != self.hkv)
        else:
            k, v = cache.update(self.layer_idx, k, v, step)  # (B, Hkv, kv_len, D)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=step.attn_mask, is_causal=step.is_causal,
                                                 enable_gqa=self.h != self.hkv)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.h * self.d))

    def forward_paged(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: PagedKVCache,
                      slot_mapping: torch.Tensor, plan) -> torch.Tensor:
        """x (N, hidden); cos/sin (N, D) -> (N, hidden)."""
        n = x.shape[0]
        q = apply_rope(self.q_proj(x).view(n, self.h, self.d), cos[:, None], sin[:, None])  # (N, H, D)
        k = apply_rope(self.k_proj(x).view(n, self.hkv, self.d), cos[:, None], sin[:, None])  # (N, Hkv, D)
        v = self.v_proj(x).view(n, self.hkv, self.d)
        cache.write(self.layer_idx, k, v, slot_mapping)
        k_flat, v_flat = cache.flat(self.layer_idx)
        out = paged_attention(q, k_flat, v_flat, plan)  # (N, H, D)
        return self.o_proj(out.reshape(n, self.h * self.d))


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, layer_idx)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)


class LlamaModel(nn.Module):
    """Parameter names follow HF's minus the ``model.`` prefix, so safetensors load without renaming."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary = Rotary(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.decode_kernel = None  # paged_attention.DecodeKernel for pure-decode batches (paged_decode_cpu.py)

    # ------------------------------------------------------------------ contiguous / no cache
    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor | None = None, cache=None,
                logits_to_keep: int = 0) -> torch.Tensor:
        """input_ids (B, T) -> logits (B, T, V). ``cache``: None, ContiguousKVCache or Int8KVCache.

        ``logits_to_keep=k > 0`` projects only the last k positions (generation needs just the last one).
        """
        b, t = input_ids.shape
        step = None
        if cache is None:
            if positions is None:
                positions = torch.arange(t, device=input_ids.device).expand(b, t)
        else:
            step = self._make_step(input_ids, positions, cache)
            positions = step.positions
        x = self.embed_tokens(input_ids)  # (B, T, hidden)
        cos, sin = self.rotary(positions, x.dtype)  # (B, T, D)
        for layer in self.layers:
            x = x + layer.self_attn(layer.input_layernorm(x), cos, sin, cache, step)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        if cache is not None:
            cache.advance(step)
        if logits_to_keep > 0:
            x = x[:, -logits_to_keep:]
        return self.lm_head(self.norm(x))

    @staticmethod
    def _make_step(input_ids: torch.Tensor, positions: torch.Tensor | None, cache: ContiguousKVCache) -> Step:
        b, t = input_ids.shape
        dev = input_ids.device
        if positions is None:  # append after what is cached: one slice write, cheap mask
            start = cache.length
            kv_len = start + t
            cache.check_room(kv_len)
            positions = torch.arange(start, kv_len, device=dev).expand(b, t)
            if t == 1 or start == 0:  # decode sees everything; a fresh prompt is plain causal
                return Step(positions, start, kv_len, None, t > 1)
        else:
            positions = positions.to(dev).expand(b, t)
            first = positions[:, :1]
            uniform = bool((positions == first[:1, :1] + torch.arange(t, device=dev)).all())
            start = int(first[0, 0]) if uniform else None
            kv_len = max(cache.length, int(positions.max()) + 1)
            cache.check_room(kv_len)
        keys = torch.arange(kv_len, device=dev)
        mask = (keys[None, None, :] <= positions[:, :, None])[:, None]  # (B, 1, T, kv_len)
        return Step(positions, start, kv_len, mask, False)

    # ------------------------------------------------------------------ paged
    def forward_batch(self, input_ids: torch.Tensor, positions: torch.Tensor, cache: PagedKVCache,
                      meta: AttentionMetadata) -> torch.Tensor:
        """Flattened batch: input_ids/positions (N,) -> logits (num_logits, V); K/V go to ``cache``."""
        if input_ids.dim() != 1 or positions.shape != input_ids.shape:
            raise ValueError("forward_batch takes flat (N,) input_ids and positions")
        plan = build_plan(meta, cache.block_size, input_ids.device, self.decode_kernel)
        slot_mapping = meta.slot_mapping.to(input_ids.device)
        x = self.embed_tokens(input_ids)  # (N, hidden)
        cos, sin = self.rotary(positions, x.dtype)  # (N, D)
        for layer in self.layers:
            x = x + layer.self_attn.forward_paged(layer.input_layernorm(x), cos, sin, cache, slot_mapping, plan)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        idx = meta.logits_indices if meta.logits_indices is not None else meta.default_logits_indices()
        return self.lm_head(self.norm(x.index_select(0, idx.to(x.device))))

    # ------------------------------------------------------------------ loading
    @property
    def device(self) -> torch.device:
        return self.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    @classmethod
    def from_pretrained(cls, path_or_spec: str | Path | None = None, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32, load_format: str = "auto") -> LlamaModel:
        """Load a HF safetensors folder (or spec such as ``smollm2-135m``); ``dummy`` = random weights."""
        from common.loader import LOAD_FORMATS, ModelLoadError, load_config, resolve_model_path

        if load_format not in LOAD_FORMATS:
            raise ModelLoadError(f"unknown load format {load_format!r}; choose one of {', '.join(LOAD_FORMATS)}.")
        spec = None if path_or_spec is None else str(path_or_spec)
        if load_format == "dummy":
            cfg = _config_or_error(load_config(spec))
            with torch.device(device):
                model = cls(cfg).to(dtype)
            for name, p in model.named_parameters():  # small random weights keep activations finite
                if name.endswith("bias"):
                    nn.init.zeros_(p)
                elif p.dim() > 1:
                    nn.init.normal_(p, std=0.02)
                else:
                    nn.init.ones_(p)  # norm weights
            return model.eval()
        folder = Path(resolve_model_path(spec))
        if not folder.is_dir():
            raise ModelLoadError(f"{spec!r} is not a local folder; this model loads local safetensors folders "
                                 f"only (download it first, or use --load-format dummy).")
        cfg = _config_or_error(json.loads((folder / "config.json").read_text()))
        with torch.device("meta"):
            model = cls(cfg)
        model.load_state_dict(_read_safetensors(folder, cfg), strict=True, assign=True)
        if cfg.tie_word_embeddings:
            model.lm_head.weight = model.embed_tokens.weight
        model.rotary.inv_freq = rope_inv_freq(cfg)  # buffers built on "meta" must be rebuilt
        return model.to(device=device, dtype=dtype).eval()


def _config_or_error(d: dict) -> ModelConfig:
    from common.loader import ModelLoadError

    try:
        return ModelConfig.from_dict(d)
    except ValueError as exc:  # unsupported architecture or a broken config: one sentence, not a traceback
        raise ModelLoadError(f"this model cannot be built from that config: {exc}") from None


def _read_safetensors(folder: Path, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    from common.loader import ModelLoadError

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(f"{folder} has no *.safetensors files; this loader reads safetensors only.")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as sf:
            for key in sf.keys():  # noqa: SIM118 - safe_open is not a dict
                name = key.removeprefix("model.")
                if "rotary_emb" in name:
                    continue
                state[name] = sf.get_tensor(key)
    if cfg.tie_word_embeddings:
        state["lm_head.weight"] = state["embed_tokens.weight"]
    elif "lm_head.weight" not in state:
        raise ModelLoadError(f"{folder} has untied embeddings but no lm_head.weight")
    return state


def main(argv: list[str] | None = None) -> int:
    from ch04_kvcache.cli_model import model_from_args
    from common.chat import FRANCE_PROMPT, chat_ids
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.loader import load_tokenizer

    parser = make_parser("python -m ch04_kvcache.model", __doc__)
    add_common_args(parser)
    parser.add_argument("--prompt", default=FRANCE_PROMPT, help="user message (chat template applied)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=24, help="tokens to generate")
    args = parser.parse_args(argv)
    with friendly_errors():
        model = model_from_args(args)
        tok = load_tokenizer(args.model)
        from ch04_kvcache.generate import generate

        res = generate(model, chat_ids(tok, args.prompt), 8 if args.smoke else args.max_new_tokens,
                       cache="contiguous")
        print(tok.decode(res.token_ids, skip_special_tokens=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
