"""Exercise 7.1, plausible but wrong: on a rejection it resamples from the target p itself instead of the
residual max(0, p - q), which over-weights the tokens the draft already proposed often."""

import torch


def accept_or_resample(p, q, tokens, generator=None):
    out = []
    for i, x in enumerate(tokens):
        if float(torch.rand(1, generator=generator)) < min(1.0, float(p[i, x] / q[i, x])):
            out.append(x)
            continue
        out.append(int(torch.multinomial(p[i], 1, generator=generator)))
        return out
    out.append(int(torch.multinomial(p[len(tokens)], 1, generator=generator)))
    return out
