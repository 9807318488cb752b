"""Exercise 2.1, plausible but wrong: the KV cache per token uses hidden_size (2 x layers x hidden x bytes),
which is right for multi-head attention and too large for every GQA model (Llama-3-8B: 4x)."""


def memory_needs(config, bytes_per_param=2, kv_bytes=2, batch=1, context=4096):
    from ch02_gpu.solutions.ex2_1_memory_needs import memory_needs as right  # the parameter count is right

    out = right(config, bytes_per_param, kv_bytes, batch, context)
    kv = 2 * config["num_hidden_layers"] * config["hidden_size"] * kv_bytes
    out.update(kv_bytes_per_token=kv, kv_cache_bytes=kv * batch * context,
               total_bytes=out["weights_bytes"] + kv * batch * context)
    return out


def compare_models(configs, bytes_per_param=2, kv_bytes=2, batch=1, context=4096):
    rows = [{"model": n, **memory_needs(c, bytes_per_param, kv_bytes, batch, context)} for n, c in configs.items()]
    return sorted(rows, key=lambda r: r["total_bytes"])
