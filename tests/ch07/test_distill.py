"""7.4.3: the distilled draft: built from the target, trained to agree with it, exact when used, cached."""

from __future__ import annotations

import pytest
import torch

from ch04_kvcache.generate import generate
from ch07_speculative.distill import DistillConfig, TrainReport, load_draft, save_draft, train
from ch07_speculative.draft_model import SubVocabHead, build_draft
from ch07_speculative.speculative import ModelDrafter, speculative_generate
from ch07_speculative.stats import distribution_test, random_tiny_pair


@pytest.fixture
def tiny_target():
    return random_tiny_pair(0)[0]


def test_sub_vocab_head_keeps_the_subset_logits_and_blocks_the_rest():
    weight = torch.randn(10, 4)
    ids = torch.tensor([1, 5, 7])
    head = SubVocabHead(weight[ids].clone(), ids, vocab_size=10)
    x = torch.randn(2, 3, 4)
    full = head(x)  # (2, 3, 10)
    torch.testing.assert_close(full[..., ids], x @ weight[ids].T)
    others = [i for i in range(10) if i not in ids.tolist()]
    assert torch.isinf(full[..., others]).all() and (full[..., others] < 0).all()
    assert torch.softmax(full, -1)[..., others].abs().max() == 0  # the draft can never propose them
    head.full = False
    assert head(x).shape == (2, 3, 3)


def test_a_draft_with_every_layer_and_token_is_the_target(tiny_target):
    v, n = tiny_target.config.vocab_size, tiny_target.config.num_layers
    draft = build_draft(tiny_target, list(range(n)), torch.arange(v))
    ids = torch.tensor([[1, 17, 42, 99, 5]])
    with torch.inference_mode():
        torch.testing.assert_close(draft(ids), tiny_target(ids))


def test_bad_layer_lists_are_refused_with_a_reason(tiny_target):
    with pytest.raises(ValueError, match="distinct block indices"):
        build_draft(tiny_target, [0, 0], torch.arange(8))
    with pytest.raises(ValueError, match="distinct block indices"):
        build_draft(tiny_target, [7], torch.arange(8))


def test_training_lowers_the_loss_and_leaves_the_target_alone(tiny_target):
    v = tiny_target.config.vocab_size
    before = {k: t.clone() for k, t in tiny_target.state_dict().items()}
    draft = build_draft(tiny_target, [-1], torch.arange(0, v, 2))  # even ids only
    gen = torch.Generator().manual_seed(0)
    corpus = [(torch.randint(0, v, (6,), generator=gen).tolist(),
               (torch.randint(0, v // 2, (8,), generator=gen) * 2).tolist()) for _ in range(4)]
    rep = train(draft, corpus, DistillConfig(layers=(-1,), frozen=0, epochs=30, batch=4, lr=3e-3))
    assert rep.steps == 30 and rep.train_tokens == 32
    assert rep.loss_last < 0.5 * rep.loss_first
    assert rep.draft_params == sum(p.numel() for n, p in draft.named_parameters() if not n.startswith("embed"))
    for k, t in tiny_target.state_dict().items():
        assert torch.equal(t, before[k]), f"training the draft changed the target's {k}"
    assert draft.lm_head.full and not draft.training  # back to inference mode


def test_greedy_speculation_with_a_sub_vocab_draft_gives_the_target_tokens(tiny_target):
    v = tiny_target.config.vocab_size
    draft = build_draft(tiny_target, [0], torch.arange(0, v, 3))
    prompt = [1, 17, 42, 99]
    ref = generate(tiny_target, prompt, 12, cache="contiguous", eos_token_id=None)
    res = speculative_generate(tiny_target, ModelDrafter(draft), prompt, 12, gamma=3, eos_token_id=None)
    assert res.token_ids == ref.token_ids


def test_sampling_with_a_sub_vocab_draft_follows_the_target_distribution(tiny_target):
    """Odd ids are unreachable for the draft, among them the target's favourite first token (99, p ~ 1):
    the residual step must supply them, and the samples must still follow the target exactly."""
    v = tiny_target.config.vocab_size
    draft = build_draft(tiny_target, [0], torch.arange(0, v, 2))
    out = distribution_test(tiny_target, draft, [1, 17, 42, 99], samples=300)
    assert out["p_first"] > 0.001 and out["p_second"] > 0.001
    assert out["acceptance_rate"] < 0.5


def test_a_saved_draft_loads_to_the_same_logits(tiny_target, tmp_path):
    v = tiny_target.config.vocab_size
    draft = build_draft(tiny_target, [1], torch.arange(0, v, 2))
    with torch.no_grad():
        draft.lm_head.weight.add_(0.01)  # something training would have changed
    save_draft(draft, tmp_path, DistillConfig(layers=(1,), vocab=v // 2), TrainReport(train_s=1.5, steps=3))
    again, rep = load_draft(tiny_target, tmp_path)
    ids = torch.tensor([[3, 9, 27]])
    with torch.inference_mode():
        torch.testing.assert_close(again(ids), draft(ids))
    assert rep.train_s == 1.5 and rep.steps == 3
    assert not any(k.startswith("embed_tokens") for k in again.state_dict().keys() - draft.state_dict().keys())


def test_text_chunks_are_fixed_length_workload_text(embedded_tokenizer):
    from ch07_speculative.distill import text_chunks

    chunks = text_chunks(embedded_tokenizer, 1000, length=100)
    assert len(chunks) == 10
    assert all(len(text) == 100 and answer == [] for text, answer in chunks)


def test_distill_cli_smoke_trains_measures_and_reports(capsys):
    """A random 2-layer target: the whole pipeline (generate, label, train, speculate) in seconds."""
    import json

    from ch07_speculative.distill import main

    assert main(["--smoke", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not out["loaded_from_cache"] and out["report"]["steps"] >= 1
    assert all(r["identical"] for r in out["rows"])  # exact whatever the draft's quality
    assert {r["draft"] for r in out["rows"]} == {"distilled", "self-draft 1L (untrained)"}


def test_frozen_blocks_keep_the_target_weights(tiny_target):
    v = tiny_target.config.vocab_size
    draft = build_draft(tiny_target, [0, 1], torch.arange(v))
    corpus = [([1, 2, 3, 4], [5, 6, 7, 8])] * 2
    rep = train(draft, corpus, DistillConfig(layers=(0, 1), frozen=1, epochs=2, batch=2, lr=1e-2))
    for name, t in tiny_target.layers[0].state_dict().items():
        assert torch.equal(draft.layers[0].state_dict()[name], t), name
    assert not torch.equal(draft.layers[1].mlp.down_proj.weight, tiny_target.layers[1].mlp.down_proj.weight)
    assert rep.trained_params < rep.draft_params
    assert all(p.requires_grad for p in draft.layers[0].parameters())  # restored after training
