"""Exercise 7.1, a different correct answer: acceptance tested as u * q < p (no division), the residual
sampled by inverse CDF with one uniform draw."""

import torch


def _sample(weights, generator):
    cdf = torch.cumsum(weights / weights.sum(), 0)
    u = torch.rand(1, generator=generator, dtype=cdf.dtype)
    return int(torch.searchsorted(cdf, u).clamp_max(len(cdf) - 1))


def accept_or_resample(p, q, tokens, generator=None):
    accepted = []
    for i, x in enumerate(tokens):
        u = torch.rand(1, generator=generator)
        if float(u) * float(q[i, x]) < float(p[i, x]):
            accepted.append(x)
        else:
            residual = torch.relu(p[i] - q[i])
            return accepted + [_sample(residual if residual.sum() > 0 else p[i], generator)]
    return accepted + [_sample(p[len(tokens)], generator)]
