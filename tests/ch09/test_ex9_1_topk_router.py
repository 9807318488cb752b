"""Exercise 9.1: the top-k router picks the k largest, weights sum to 1, balanced routing has loss 1."""

import pytest
import torch


def test_router_picks_top_k_and_renormalises(exercise):
    mod = exercise("ch09_advanced", "ex9_1_topk_router")
    torch.manual_seed(0)
    logits = torch.randn(32, 8)
    idx, w, aux = mod.route(logits, 2)
    assert idx.shape == (32, 2)
    assert set(idx[0].tolist()) == set(logits[0].topk(2).indices.tolist())
    torch.testing.assert_close(w.sum(-1), torch.ones(32))
    assert float(aux) >= 0.99  # E * sum f P is at least ~1, larger when unbalanced


def test_balanced_routing_has_loss_one_and_collapse_has_loss_e(exercise):
    mod = exercise("ch09_advanced", "ex9_1_topk_router")
    balanced = torch.eye(4).repeat(4, 1) * 50
    assert float(mod.route(balanced, 1)[2]) == pytest.approx(1.0, abs=1e-3)
    collapsed = torch.zeros(16, 4)
    collapsed[:, 0] = 50
    assert float(mod.route(collapsed, 1)[2]) == pytest.approx(4.0, abs=1e-3)


def test_bad_k_is_rejected(exercise):
    mod = exercise("ch09_advanced", "ex9_1_topk_router")
    with pytest.raises(ValueError):
        mod.route(torch.randn(3, 4), 5)
