"""Exercise 2.1, a different correct answer: count the weight matrices one by one as (rows, cols) shapes
and sum their products; the KV per token from the K and V projection widths."""

import math


def _shapes(c):
    h, heads = c["hidden_size"], c["num_attention_heads"]
    hd = c.get("head_dim") or h // heads
    kvh = c.get("num_key_value_heads") or heads
    experts = c.get("num_local_experts") or 1
    inter = c["intermediate_size"]
    layer = [(h, heads * hd), (h, kvh * hd), (h, kvh * hd), (heads * hd, h)]  # q, k, v, o
    layer += [(h, inter), (h, inter), (inter, h)] * experts
    if experts > 1:
        layer.append((h, experts))  # router
    if c.get("attention_bias") or c.get("model_type") == "qwen2":
        layer += [(1, heads * hd), (1, kvh * hd), (1, kvh * hd)]
    layer += [(1, h), (1, h)]  # input and post-attention norms
    shapes = layer * c["num_hidden_layers"] + [(c["vocab_size"], h), (1, h)]
    if not c.get("tie_word_embeddings"):
        shapes.append((h, c["vocab_size"]))
    return shapes, kvh * hd


def memory_needs(config, bytes_per_param=2, kv_bytes=2, batch=1, context=4096):
    shapes, kv_width = _shapes(config)
    params = sum(math.prod(s) for s in shapes)
    per_token = config["num_hidden_layers"] * (kv_width + kv_width) * kv_bytes  # K and V
    weights = int(params * bytes_per_param)
    cache = per_token * context * batch
    return dict(params=params, weights_bytes=weights, kv_bytes_per_token=per_token, kv_cache_bytes=cache,
                total_bytes=weights + cache)


def compare_models(configs, bytes_per_param=2, kv_bytes=2, batch=1, context=4096):
    rows = []
    for name in configs:
        rows.append({"model": name, **memory_needs(configs[name], bytes_per_param, kv_bytes, batch, context)})
    rows.sort(key=lambda r: (r["total_bytes"], r["model"]))
    return rows
