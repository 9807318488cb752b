"""Exercise 4.1, plausible but wrong: ``update`` returns the concatenation but stores only the newest K/V,
so every decode step attends to the previous token and itself instead of the whole sequence."""

import torch


class SimpleKVCache:
    def __init__(self, num_layers):
        self.k = [None] * num_layers
        self.v = [None] * num_layers
        self.length = 0

    def check_room(self, new_len):
        pass

    def update(self, layer, k, v, step):
        if self.k[layer] is not None:
            full_k, full_v = torch.cat([self.k[layer], k], 2), torch.cat([self.v[layer], v], 2)
        else:
            full_k, full_v = k, v
        self.k[layer], self.v[layer] = k, v  # forgets the past
        return full_k, full_v

    def advance(self, step):
        self.length = step.kv_len


@torch.inference_mode()
def generate_with_simple_cache(model, prompt_ids, max_new_tokens):
    cache = SimpleKVCache(model.config.num_layers)
    out = [int(model(torch.tensor([prompt_ids]), cache=cache)[0, -1].argmax())]
    while len(out) < max_new_tokens:
        out.append(int(model(torch.tensor([[out[-1]]]), cache=cache)[0, -1].argmax()))
    return out
