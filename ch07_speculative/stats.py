"""The statistics behind "speculative sampling is exact" (book 7.2): exact marginals and a chi-square test.

:func:`exact_first_two_marginals` computes, from the target's own logits, the distribution of the first
and of the second sampled token after a prompt (the second marginalised over the first: p2 = p1 @ P,
one batched forward over every possible first token). :func:`chi_square_p` compares observed counts
with such a distribution (Pearson's test, sparse bins merged so every expected count is >= 5); the p-value
is the regularised upper incomplete gamma function, ``torch.special.gammaincc`` (no scipy needed).

Used by ``tests/ch07/test_speculative.py`` and ``python -m ch07_speculative.bench``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ch04_kvcache.model import LlamaModel


@torch.inference_mode()
def exact_first_two_marginals(model: LlamaModel, prompt_ids: Sequence[int], temperature: float = 1.0,
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(p1 (V,), p2 (V,)): the first sampled token's distribution and the second's marginal.

    Costs one forward over V sequences of len(prompt)+1 tokens: meant for small vocabularies (tests).
    """
    dev = model.device
    prompt = torch.tensor([list(prompt_ids)], device=dev)  # (1, T)
    p1 = torch.softmax(model(prompt)[0, -1].float() / temperature, -1)  # (V,)
    v = p1.numel()
    ext = torch.cat([prompt.expand(v, -1), torch.arange(v, device=dev)[:, None]], 1)  # (V, T+1)
    cond = torch.softmax(model(ext, logits_to_keep=1)[:, -1].float() / temperature, -1)  # (V, V) p(x2 | x1)
    return p1.cpu(), (p1 @ cond).cpu()


def chi_square_p(counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0) -> float:
    """Pearson chi-square p-value of ``counts`` (V,) against ``probs`` (V,); sparse bins are merged."""
    counts, probs = counts.double().flatten(), probs.double().flatten()
    if counts.shape != probs.shape:
        raise ValueError("counts and probs must have the same length")
    n = float(counts.sum())
    if n <= 0:
        raise ValueError("no samples to test")
    expected = n * probs / probs.sum()
    big = expected >= min_expected
    obs_bins = [counts[big], counts[~big].sum().reshape(1)]
    exp_bins = [expected[big], expected[~big].sum().reshape(1)]
    obs, exp = torch.cat(obs_bins), torch.cat(exp_bins)
    keep = exp > 0
    if bool((obs[~keep] > 0).any()):
        return 0.0  # a sample the distribution says is impossible
    obs, exp = obs[keep], exp[keep]
    df = obs.numel() - 1
    if df < 1:
        return 1.0
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64),
                                         torch.tensor(chi2 / 2, dtype=torch.float64)))


TINY_CONFIG = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 256,
               "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
               "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2}


def sharpen_pair(target: LlamaModel, draft: LlamaModel) -> tuple[LlamaModel, LlamaModel]:
    """Give a tiny random target sharp next-token distributions (top token ~0.66 at temperature 1, so a
    few hundred samples suffice) and a draft that disagrees with it (flatter head plus noise)."""
    h, v = target.config.hidden_size, target.config.vocab_size
    noise = torch.randn(v, h, generator=torch.Generator().manual_seed(1)) * 0.02
    with torch.no_grad():
        target.lm_head = torch.nn.Linear(h, v, bias=False)
        target.lm_head.weight.copy_(target.embed_tokens.weight * 15)
        draft.lm_head = torch.nn.Linear(h, v, bias=False)
        draft.lm_head.weight.copy_(draft.embed_tokens.weight * 6 + noise)
    return target, draft


def random_tiny_pair(seed: int = 0) -> tuple[LlamaModel, LlamaModel]:
    """A sharpened random tiny target and its disagreeing draft (same body), built without any files."""
    import copy

    from ch04_kvcache.config import ModelConfig

    torch.manual_seed(seed)
    model = LlamaModel(ModelConfig.from_dict(TINY_CONFIG))
    for p in model.parameters():
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.02)
    model.eval()
    return sharpen_pair(model, copy.deepcopy(model))


def distribution_test(target: LlamaModel, draft: LlamaModel, prompt_ids: Sequence[int], samples: int,
                      gamma: int = 3, drafter=None) -> dict[str, float]:
    """Sample the first two tokens ``samples`` times with speculative sampling at temperature 1 and
    chi-square them against the target's exact marginals: {p_first, p_second, acceptance_rate}.

    ``drafter``: the drafter class to wrap ``draft`` in (default ``speculative.ModelDrafter``)."""
    from ch07_speculative.speculative import ModelDrafter, speculative_generate

    drafter = drafter or ModelDrafter

    v = target.config.vocab_size
    p1, p2 = exact_first_two_marginals(target, prompt_ids)
    first, second = torch.zeros(v), torch.zeros(v)
    accepted = drafted = 0
    for i in range(samples):
        res = speculative_generate(target, drafter(draft), prompt_ids, 2, gamma=gamma, temperature=1.0,
                                   seed=i, eos_token_id=None)
        first[res.token_ids[0]] += 1
        second[res.token_ids[1]] += 1
        accepted += res.stats.accepted
        drafted += res.stats.drafted
    return {"p_first": chi_square_p(first, p1), "p_second": chi_square_p(second, p2),
            "acceptance_rate": accepted / max(drafted, 1)}
