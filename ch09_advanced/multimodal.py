"""A LLaVA-style multimodal pipeline (book 9.2): vision encoder -> projector -> our ch04 language model.

    python -m ch09_advanced.multimodal            # resolutions 224/336/448, embedded SmolLM2 as the LM
    python -m ch09_advanced.multimodal --smoke

The vision encoder (a small ViT) and the projector have RANDOM weights: there is no hub access here, so
the model cannot describe an image. The costs are real: how many image tokens each resolution produces,
how long the encoder takes against the language model's prefill of those tokens, and what caching the
encoder output by image hash saves. Image embeddings replace placeholder positions in the prompt's
embedding sequence (LLaVA-1.5: ``<image>`` expands to one token per patch), then run through ch04's
decoder layers unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
from torch import nn

from common.bench import stamp_dict, time_fn
from common.cli import add_common_args, friendly_errors, make_parser, seed_everything
from common.report import emit_json, print_table


class TinyViT(nn.Module):
    """Patchify (conv, stride = patch) + transformer encoder. image (B, 3, S, S) -> (B, (S/patch)^2, dim)."""

    def __init__(self, patch: int = 14, dim: int = 192, depth: int = 4, heads: int = 3) -> None:
        super().__init__()
        self.patch = patch
        self.embed = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, batch_first=True, norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.embed(images).flatten(2).transpose(1, 2)  # (B, P, dim)
        return self.encoder(x)  # no position embedding: weights are random anyway; shapes and cost are real


class Projector(nn.Sequential):
    """LLaVA-1.5's two-layer MLP from vision width to the language model's hidden size."""

    def __init__(self, vision_dim: int, hidden: int) -> None:
        super().__init__(nn.Linear(vision_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))


def image_tokens(resolution: int, patch: int = 14, tile: int | None = None) -> int:
    """Tokens one image costs: (S/patch)^2, or with LLaVA-NeXT-style tiling, tiles x per-tile + a thumbnail."""
    per = (min(resolution, tile or resolution) // patch) ** 2
    if tile is None or resolution <= tile:
        return per
    return (-(-resolution // tile)) ** 2 * per + per


@dataclass
class EncoderCache:
    """Projected image embeddings by SHA-256 of the pixel bytes: a repeated image skips the encoder."""

    entries: dict[str, torch.Tensor] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def get_or_compute(self, image: torch.Tensor, compute) -> torch.Tensor:
        key = hashlib.sha256(image.contiguous().numpy().tobytes()).hexdigest()
        if key in self.entries:
            self.hits += 1
        else:
            self.misses += 1
            self.entries[key] = compute(image)
        return self.entries[key]


def forward_embeds(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ch04's no-cache forward starting from embeddings: x (1, T, hidden) -> logits of the last token (V,)."""
    t = x.shape[1]
    cos, sin = model.rotary(torch.arange(t)[None], x.dtype)  # (1, T, D)
    for layer in model.layers:
        x = x + layer.self_attn(layer.input_layernorm(x), cos, sin, None, None)
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return model.lm_head(model.norm(x[:, -1]))[0]


def splice(model: nn.Module, before: list[int], image_embeds: torch.Tensor, after: list[int]) -> torch.Tensor:
    """Text embeddings with the image's (1, P, hidden) inserted where ``<image>`` stood -> (1, T, hidden)."""
    emb = model.embed_tokens
    return torch.cat([emb(torch.tensor([before])), image_embeds, emb(torch.tensor([after]))], dim=1)


def run(smoke: bool = False) -> dict:
    from ch04_kvcache.model import LlamaModel

    lm = LlamaModel.from_pretrained("smollm2-135m").eval()
    vit = TinyViT().eval()
    proj = Projector(192, lm.config.hidden_size).eval()
    before, after = [1, 9690, 198], [504, 3458, 253, 2038, 30]  # fixed ids around the image
    rows = []
    reps = 1 if smoke else 3
    with torch.no_grad():
        for res in ([224] if smoke else [224, 336, 448]):
            img = torch.rand(1, 3, res, res)
            enc = time_fn(lambda i=img: proj(vit(i)), repeats=reps)
            embeds = proj(vit(img))  # (1, P, hidden)
            x = splice(lm, before, embeds, after)
            pre = time_fn(lambda x=x: forward_embeds(lm, x), repeats=reps)
            rows.append({"resolution": res, "image tokens": embeds.shape[1], "prompt tokens": x.shape[1],
                         "encoder ms": enc.median * 1e3, "LM prefill ms": pre.median * 1e3,
                         "encoder/prefill": enc.median / pre.median})
        cache = EncoderCache()
        img = torch.rand(1, 3, 224, 224)
        miss = time_fn(lambda: EncoderCache().get_or_compute(img, lambda i: proj(vit(i))), repeats=reps)
        cache.get_or_compute(img, lambda i: proj(vit(i)))
        hit = time_fn(lambda: cache.get_or_compute(img, lambda i: proj(vit(i))), repeats=reps)
    return {"_rows": rows, "weights": "random (encoder and projector)",
            "tokens_336_tiled_672": image_tokens(672, 14, 336), "tokens_336_resized": image_tokens(336, 14),
            "encoder_cache_miss_ms": miss.median * 1e3, "encoder_cache_hit_ms": hit.median * 1e3,
            "encoder_cache_speedup": miss.median / hit.median, "hardware": stamp_dict(dtype="fp32")}


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch09_advanced.multimodal", __doc__)
    add_common_args(parser, model=False)
    args = parser.parse_args(argv)
    with friendly_errors():
        seed_everything(args.seed)
        out = run(args.smoke)
        rows = out.pop("_rows")
        if not args.json:
            print("Encoder and projector weights are random: the costs are real, the outputs are not meaningful.")
            print_table(rows, title="image tokens and cost per resolution (patch 14, ViT 4x192)")
        emit_json(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
