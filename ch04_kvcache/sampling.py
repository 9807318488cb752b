"""Sampling: the one ``SamplingParams`` and the one sampler every engine in this repository uses (the
sampling step of book 4.2's generation loop).

ch04's ``generate`` introduces sampling; ch05's engine samples a whole batch with it, ch08's backends
build their parameters from it. Everything about how a token is picked lives here, in vLLM V1's order:

1. **logprobs** (when asked for) are taken from the *raw* model output, ``log_softmax(logits)`` before
   any processing. That is vLLM V1's default (``logprobs_mode="raw_logprobs"``): the number says what the
   model thinks, not what penalties or temperature made of it.
2. **penalties** (vLLM's definitions): the repetition penalty ``r`` touches every token seen in the prompt
   *or* the output so far, dividing a positive logit by ``r`` and multiplying a negative one by ``r``;
   then ``logit -= frequency_penalty * count + presence_penalty * (count > 0)`` with ``count`` how often
   the token appears in the *output* so far. Penalties apply to greedy decoding too.
3. **greedy** (``temperature == 0``): argmax of the penalized logits; nothing below runs.
4. **temperature**, then **min_p** (drop tokens whose probability is below ``min_p`` times the top
   token's), then **top_k**, then **top_p** (the smallest prefix of the sorted tokens whose mass reaches
   ``top_p``), then one draw with the request's ``torch.Generator``.

:func:`sample_next` is the reference, one request at a time, written to be read. :func:`sample_batch`
does the same for many requests at once with tensor operations (one penalty scatter, one sort for
top-k/top-p); per-request generators keep seeded requests reproducible whatever they are batched with.
``tests/ch04/test_sampling.py`` checks the two agree and checks the penalties against hand-computed
numbers. The parameters themselves (:class:`SamplingParams`, :class:`TokenLogprob`, :func:`choice_params`)
are in ``sampling_params.py``, which imports no torch, so a scheduler can hold them without loading it.

    python -m ch04_kvcache.sampling       # one set of logits through each step, printed
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ch04_kvcache.sampling_params import (
    MAX_LOGPROBS,
    SamplingParams,
    SamplingParamsError,
    TokenLogprob,
    choice_params,
)

# The parameters' types are re-exported: a caller that samples imports everything from here.
__all__ = ["MAX_LOGPROBS", "Sample", "SamplingParams", "SamplingParamsError", "TokenLogprob", "apply_penalties",
           "apply_penalties_batch", "choice_params", "sample_batch", "sample_next", "token_logprob"]


@dataclass(frozen=True, slots=True)
class Sample:
    """What the sampler returns for one request: the token, and its logprobs when they were asked for."""

    token_id: int
    logprob: TokenLogprob | None = None


# --------------------------------------------------------------------------- the reference, one request


def apply_penalties(logits: torch.Tensor, params: SamplingParams, prompt_ids: Sequence[int] = (),
                    output_ids: Sequence[int] = ()) -> torch.Tensor:
    """Repetition, frequency and presence penalties on one row of logits (V,) (a new fp32 tensor)."""
    logits = logits.float().clone()
    if not params.has_penalties:
        return logits
    counts: dict[int, int] = {}
    for t in output_ids:
        counts[t] = counts.get(t, 0) + 1
    r = params.repetition_penalty
    if r != 1.0:
        for t in set(prompt_ids) | set(counts):
            v = logits[t]
            logits[t] = v / r if v > 0 else v * r
    for t, c in counts.items():
        logits[t] -= params.frequency_penalty * c + params.presence_penalty
    return logits


def token_logprob(raw_logits: torch.Tensor, token_id: int, k: int) -> TokenLogprob:
    """The logprob and rank of ``token_id`` and the top ``k`` alternatives, from raw logits (V,)."""
    lp = torch.log_softmax(raw_logits.float(), dim=-1)
    chosen = lp[token_id]
    rank = int((lp > chosen).sum()) + 1
    top: tuple[tuple[int, float], ...] = ()
    if k > 0:
        vals, ids = torch.topk(lp, min(k, lp.numel()))
        top = tuple(zip(ids.tolist(), vals.tolist(), strict=True))
    return TokenLogprob(int(token_id), float(chosen), rank, top)


def sample_next(logits: torch.Tensor, params: SamplingParams | None = None,
                generator: torch.Generator | None = None, prompt_ids: Sequence[int] = (),
                output_ids: Sequence[int] = ()) -> Sample:
    """One token from one row of logits (V,): penalties, then greedy argmax or filtered sampling."""
    params = params or SamplingParams()
    x = apply_penalties(logits, params, prompt_ids, output_ids)
    if params.greedy:
        tok = int(torch.argmax(x))
    else:
        x = x / params.temperature
        if params.min_p > 0:
            probs = x.softmax(-1)
            x = x.masked_fill(probs < params.min_p * probs.max(), float("-inf"))
        if params.top_k > 0:
            kth = torch.topk(x, min(params.top_k, x.numel())).values[-1]
            x = x.masked_fill(x < kth, float("-inf"))
        if params.top_p < 1.0:
            sorted_x, order = torch.sort(x, descending=True)
            probs = sorted_x.softmax(-1)
            drop = probs.cumsum(-1) - probs > params.top_p  # keep the smallest prefix whose mass reaches top_p
            x = x.scatter(0, order, sorted_x.masked_fill(drop, float("-inf")))
        tok = int(torch.multinomial(x.softmax(-1).to(torch.float32).cpu(), 1, generator=generator))
    lp = None if params.logprobs is None else token_logprob(logits, tok, params.logprobs)
    return Sample(tok, lp)


# --------------------------------------------------------------------------- the batched version


def apply_penalties_batch(logits: torch.Tensor, params: Sequence[SamplingParams],
                          prompt_ids: Sequence[Sequence[int]], output_ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """:func:`apply_penalties` for a batch (B, V): one scatter for the counts, one ``where`` for all rows."""
    logits = logits.float().clone()
    rows = [i for i, p in enumerate(params) if p.has_penalties]
    if not rows:
        return logits
    b, v = len(rows), logits.shape[-1]
    dev = logits.device
    sub = logits[rows]
    counts = torch.zeros(b, v, device=dev)
    seen = torch.zeros(b, v, dtype=torch.bool, device=dev)
    for j, i in enumerate(rows):
        if output_ids[i]:
            out = torch.tensor(list(output_ids[i]), dtype=torch.long, device=dev)
            counts[j].scatter_add_(0, out, torch.ones(len(out), device=dev))
        if prompt_ids[i]:
            seen[j, torch.tensor(list(prompt_ids[i]), dtype=torch.long, device=dev)] = True
    seen |= counts > 0
    rep = torch.tensor([params[i].repetition_penalty for i in rows], device=dev)[:, None].expand(b, v)
    rep = torch.where(seen, rep, torch.ones_like(rep))
    sub = torch.where(sub > 0, sub / rep, sub * rep)
    freq = torch.tensor([params[i].frequency_penalty for i in rows], device=dev)[:, None]
    pres = torch.tensor([params[i].presence_penalty for i in rows], device=dev)[:, None]
    sub = sub - freq * counts - pres * (counts > 0)
    logits[rows] = sub
    return logits


def _filter_batch(x: torch.Tensor, params: Sequence[SamplingParams]) -> torch.Tensor:
    """Temperature, min_p, top_k and top_p for rows (B, V) that all sample (none greedy)."""
    dev = x.device
    x = x / torch.tensor([p.temperature for p in params], device=dev)[:, None]
    if any(p.min_p > 0 for p in params):
        min_p = torch.tensor([p.min_p for p in params], device=dev)[:, None]
        probs = x.softmax(-1)
        x = x.masked_fill(probs < min_p * probs.amax(-1, keepdim=True), float("-inf"))
    need_k, need_p = any(p.top_k > 0 for p in params), any(p.top_p < 1.0 for p in params)
    if need_k or need_p:
        sorted_x, order = torch.sort(x, dim=-1, descending=True)
        if need_k:  # the k-th largest value per row; ties with it are kept, as in the reference
            v = x.shape[-1]
            k = torch.tensor([min(p.top_k, v) if p.top_k > 0 else v for p in params], device=dev)
            kth = sorted_x.gather(1, (k - 1)[:, None])
            x = x.masked_fill(x < kth, float("-inf"))
            sorted_x = sorted_x.masked_fill(sorted_x < kth, float("-inf"))
        if need_p:
            top_p = torch.tensor([p.top_p for p in params], device=dev)[:, None]
            probs = sorted_x.softmax(-1)
            drop = (probs.cumsum(-1) - probs > top_p) & (top_p < 1.0)
            x = x.scatter(1, order, sorted_x.masked_fill(drop, float("-inf")))
    return x


def sample_batch(logits: torch.Tensor, params: Sequence[SamplingParams],
                 generators: Sequence[torch.Generator | None], prompt_ids: Sequence[Sequence[int]] | None = None,
                 output_ids: Sequence[Sequence[int]] | None = None) -> list[Sample]:
    """:func:`sample_next` for every row of ``logits`` (B, V), each with its own params and generator."""
    n = logits.shape[0]
    prompt_ids = prompt_ids if prompt_ids is not None else [()] * n
    output_ids = output_ids if output_ids is not None else [()] * n
    x = apply_penalties_batch(logits, params, prompt_ids, output_ids)
    tokens = [0] * n
    greedy = [i for i, p in enumerate(params) if p.greedy]
    if greedy:
        for i, t in zip(greedy, x[greedy].argmax(dim=-1).tolist(), strict=True):
            tokens[i] = t
    rand = [i for i, p in enumerate(params) if not p.greedy]
    if rand:
        probs = _filter_batch(x[rand], [params[i] for i in rand]).softmax(-1).to(torch.float32).cpu()
        for j, i in enumerate(rand):  # one draw per request from its own generator
            tokens[i] = int(torch.multinomial(probs[j], 1, generator=generators[i]))
    logprobs: list[TokenLogprob | None] = [None] * n
    want = [i for i, p in enumerate(params) if p.logprobs is not None]
    if want:
        lp = torch.log_softmax(logits[want].float(), dim=-1)
        chosen = lp.gather(1, torch.tensor([tokens[i] for i in want], device=lp.device)[:, None])
        ranks = ((lp > chosen).sum(-1) + 1).tolist()
        k = max(params[i].logprobs for i in want)
        top_v, top_i = torch.topk(lp, min(k, lp.shape[-1])) if k else (lp[:, :0], lp[:, :0].long())
        top_v, top_i, chosen = top_v.tolist(), top_i.tolist(), chosen[:, 0].tolist()
        for j, i in enumerate(want):
            kk = params[i].logprobs
            logprobs[i] = TokenLogprob(tokens[i], chosen[j], ranks[j],
                                       tuple(zip(top_i[j][:kk], top_v[j][:kk], strict=True)))
    return [Sample(t, lp) for t, lp in zip(tokens, logprobs, strict=True)]


def main(argv: list[str] | None = None) -> int:
    from common.cli import make_parser

    make_parser("python -m ch04_kvcache.sampling", __doc__).parse_args(argv)
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0, -3.0])
    prompt, output = [3], [0, 0, 2]
    p = SamplingParams(repetition_penalty=1.5, frequency_penalty=0.5, presence_penalty=0.25, logprobs=2)
    print(f"raw logits          {logits.tolist()}  (prompt {prompt}, output so far {output})")
    print(f"after penalties     {[round(v, 4) for v in apply_penalties(logits, p, prompt, output).tolist()]}")
    s = sample_next(logits, p, None, prompt, output)
    print(f"greedy pick         {s.token_id}; raw logprob {s.logprob.logprob:.4f} (rank {s.logprob.rank}), "
          f"top-2 {[(t, round(v, 4)) for t, v in s.logprob.top]}")
    gen = torch.Generator().manual_seed(0)
    drawn = [sample_next(logits, SamplingParams(temperature=1.0, top_k=3, top_p=0.9), gen).token_id
             for _ in range(10)]
    print(f"temperature 1, top_k 3, top_p 0.9, seed 0: {drawn}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
