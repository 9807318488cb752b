"""Multimodal pipeline: token counts, encoder cache by hash, spliced embeddings reproduce the text-only model."""

import torch

from ch09_advanced.multimodal import EncoderCache, Projector, TinyViT, forward_embeds, image_tokens, splice


def test_image_tokens_per_resolution_and_tiling():
    assert image_tokens(224) == 256 and image_tokens(336) == 576
    assert image_tokens(672, 14, 336) == 5 * 576  # 4 tiles + a thumbnail


def test_encoder_output_shape_and_cache_hits_on_same_pixels():
    vit, proj = TinyViT(dim=32, depth=1, heads=2).eval(), Projector(32, 64).eval()
    img = torch.rand(1, 3, 56, 56)
    cache = EncoderCache()
    with torch.no_grad():
        a = cache.get_or_compute(img, lambda i: proj(vit(i)))
        b = cache.get_or_compute(img.clone(), lambda i: proj(vit(i)))
        cache.get_or_compute(torch.rand(1, 3, 56, 56), lambda i: proj(vit(i)))
    assert a.shape == (1, 16, 64) and a is b
    assert (cache.hits, cache.misses) == (1, 2)


def test_forward_embeds_equals_model_on_text_only(tiny_hf_model):
    from ch04_kvcache.model import LlamaModel

    model = LlamaModel.from_pretrained(tiny_hf_model[1]).eval()
    ids = [5, 17, 99, 3, 42]
    with torch.no_grad():
        x = splice(model, ids[:2], model.embed_tokens(torch.tensor([ids[2:4]])), ids[4:])
        torch.testing.assert_close(forward_embeds(model, x), model(torch.tensor([ids]))[0, -1])
