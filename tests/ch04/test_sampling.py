"""ch04's sampler: penalties against hand-computed numbers, the batched sampler against the per-request
reference, validation naming the field, and logprobs against the model's own log_softmax."""

from __future__ import annotations

import pytest
import torch

from ch04_kvcache.generate import generate
from ch04_kvcache.sampling import (
    SamplingParams,
    SamplingParamsError,
    apply_penalties,
    apply_penalties_batch,
    sample_batch,
    sample_next,
)
from common.cli import UsageError

LOGITS = torch.tensor([2.0, 1.0, 0.5, -1.0, -3.0])
PROMPT, OUTPUT = [3], [0, 0, 2]
PEN = SamplingParams(repetition_penalty=1.5, frequency_penalty=0.5, presence_penalty=0.25)
# by hand (vLLM's definitions): token 0 is in the output twice, positive -> 2/1.5 - (0.5*2 + 0.25);
# token 1 unseen; token 2 once -> 0.5/1.5 - (0.5 + 0.25); token 3 only in the prompt, negative -> -1*1.5
# (frequency/presence count the output only); token 4 unseen
EXPECTED = [2 / 1.5 - 1.25, 1.0, 0.5 / 1.5 - 0.75, -1.5, -3.0]


def test_penalties_match_hand_computed_values():
    assert apply_penalties(LOGITS, PEN, PROMPT, OUTPUT).tolist() == pytest.approx(EXPECTED, abs=1e-6)
    batch = apply_penalties_batch(torch.stack([LOGITS, LOGITS]), [PEN, SamplingParams()], [PROMPT, PROMPT],
                                  [OUTPUT, OUTPUT])
    assert batch[0].tolist() == pytest.approx(EXPECTED, abs=1e-6)
    assert batch[1].tolist() == LOGITS.tolist()  # a row without penalties is untouched


def test_penalties_apply_to_greedy_and_logprobs_stay_raw():
    assert sample_next(LOGITS, SamplingParams()).token_id == 0
    s = sample_next(LOGITS, SamplingParams(repetition_penalty=1.5, frequency_penalty=0.5, presence_penalty=0.25,
                                           logprobs=2), None, PROMPT, OUTPUT)
    assert s.token_id == 1  # penalized token 0 drops below token 1
    raw = torch.log_softmax(LOGITS, -1)
    assert s.logprob.logprob == pytest.approx(float(raw[1]), abs=1e-6) and s.logprob.rank == 2
    assert [t for t, _ in s.logprob.top] == [0, 1]


def _mixed_params() -> list[SamplingParams]:
    return [
        SamplingParams(),
        SamplingParams(repetition_penalty=1.3, logprobs=3),
        SamplingParams(temperature=0.8, top_k=5, seed=1),
        SamplingParams(temperature=1.2, top_p=0.7, min_p=0.05, seed=2, logprobs=0),
        SamplingParams(temperature=1.0, frequency_penalty=0.7, presence_penalty=-0.4, top_k=10, top_p=0.9,
                       seed=3, logprobs=5),
        SamplingParams(temperature=0.5, repetition_penalty=0.8, min_p=0.2, seed=4),
    ]


def test_batched_sampler_agrees_with_the_per_request_reference():
    torch.manual_seed(0)
    params = _mixed_params()
    n, vocab = len(params), 64
    prompts = [torch.randint(0, vocab, (7,)).tolist() for _ in range(n)]
    outs_ref: list[list[int]] = [[] for _ in range(n)]
    outs_bat: list[list[int]] = [[] for _ in range(n)]
    gens_ref = [torch.Generator().manual_seed(100 + i) for i in range(n)]
    gens_bat = [torch.Generator().manual_seed(100 + i) for i in range(n)]
    for _ in range(12):
        logits = torch.randn(n, vocab) * 3
        ref = [sample_next(logits[i], params[i], gens_ref[i], prompts[i], outs_ref[i]) for i in range(n)]
        bat = sample_batch(logits, params, gens_bat, prompts, outs_bat)
        for i, (r, b) in enumerate(zip(ref, bat, strict=True)):
            assert r.token_id == b.token_id, (i, params[i])
            assert (r.logprob is None) == (b.logprob is None) == (params[i].logprobs is None)
            if r.logprob is not None:
                assert b.logprob.logprob == pytest.approx(r.logprob.logprob, abs=1e-5)
                assert b.logprob.rank == r.logprob.rank
                assert [t for t, _ in b.logprob.top] == [t for t, _ in r.logprob.top]
                assert len(b.logprob.top) == params[i].logprobs
            outs_ref[i].append(r.token_id)
            outs_bat[i].append(b.token_id)
    assert outs_ref == outs_bat and len({tuple(o) for o in outs_ref}) > 1


def test_filters_keep_only_allowed_tokens():
    logits = torch.tensor([3.0, 2.9, 0.0, -5.0])
    gen = torch.Generator().manual_seed(0)
    for p, allowed in [(SamplingParams(temperature=1.0, top_k=2), {0, 1}),
                       (SamplingParams(temperature=1.0, min_p=0.5), {0, 1}),
                       (SamplingParams(temperature=1.0, top_p=0.5), {0})]:
        drawn = {sample_next(logits, p, gen).token_id for _ in range(50)}
        assert drawn <= allowed, p


@pytest.mark.parametrize("field,value", [("temperature", -0.1), ("top_p", 0.0), ("top_k", -2), ("min_p", 1.5),
                                         ("presence_penalty", 2.5), ("frequency_penalty", -3.0),
                                         ("repetition_penalty", 0.0), ("logprobs", 21), ("max_tokens", 0),
                                         ("temperature", float("nan"))])
def test_validation_is_one_error_naming_the_field(field, value):
    with pytest.raises(SamplingParamsError) as e:
        SamplingParams(**{field: value})
    assert e.value.field == field and str(e.value).startswith(field)
    assert isinstance(e.value, UsageError) and isinstance(e.value, ValueError)


def test_params_are_frozen_and_normalized():
    p = SamplingParams(stop="END", top_k=-1)
    assert p.stop == ("END",) and p.top_k == 0
    with pytest.raises(AttributeError):
        p.temperature = 1.0  # type: ignore[misc]


def test_logprobs_of_greedy_tokens_match_the_models_log_softmax(tiny_model):
    ours, _ = tiny_model
    prompt = [5, 9, 17, 3, 44]
    res = generate(ours, prompt, 6, cache="paged", eos_token_id=None, params=SamplingParams(logprobs=4))
    assert res.logprobs is not None and len(res.logprobs) == len(res.token_ids)
    with torch.inference_mode():
        full = ours(torch.tensor([prompt + res.token_ids]))[0].float().log_softmax(-1)  # (T, V)
    for i, (tok, lp) in enumerate(zip(res.token_ids, res.logprobs, strict=True)):
        row = full[len(prompt) - 1 + i]
        assert lp.token_id == tok and lp.rank == 1 and lp.top[0][0] == tok
        assert lp.logprob == pytest.approx(float(row.max()), abs=1e-3)
        assert [v for _, v in lp.top] == pytest.approx(row.topk(4).values.tolist(), abs=1e-3)


def test_the_module_demo_runs(capsys):
    from ch04_kvcache.sampling import main

    assert main([]) == 0
    assert "after penalties" in capsys.readouterr().out
