"""Exercise 9.1: the top-k router picks the k largest, weights sum to 1 and are the renormalised router
probabilities, and the load-balance loss is E * sum f P, recomputed here for k = 1, 2, 3 (balanced routing
gives 1, collapse onto one expert gives E)."""

import pytest
import torch


def grader_aux(logits: torch.Tensor, idx: torch.Tensor) -> float:
    """E * sum_e f_e P_e for the reader's own assignments ``idx`` (f over all T*k assignments)."""
    t, e = logits.shape
    f = torch.bincount(idx.reshape(-1), minlength=e).double() / idx.numel()
    return float(e * (f * torch.softmax(logits.double(), -1).mean(0)).sum())


def check_picks_and_weights(mod) -> None:
    torch.manual_seed(0)
    logits = torch.randn(32, 8)
    for k in (1, 2, 3):
        idx, w, aux = mod.route(logits, k)
        assert idx.shape == (32, k) and w.shape == (32, k)
        for row in range(32):
            assert set(idx[row].tolist()) == set(logits[row].topk(k).indices.tolist())
        probs = torch.softmax(logits, -1).gather(-1, idx)
        torch.testing.assert_close(w, probs / probs.sum(-1, keepdim=True))
        assert float(aux) == pytest.approx(grader_aux(logits, idx), rel=1e-4), f"aux loss wrong for k={k}"


def check_balance_extremes(mod) -> None:
    balanced = torch.eye(4).repeat(4, 1) * 50
    assert float(mod.route(balanced, 1)[2]) == pytest.approx(1.0, abs=1e-3)
    collapsed = torch.zeros(16, 4)
    collapsed[:, 0] = 50
    assert float(mod.route(collapsed, 1)[2]) == pytest.approx(4.0, abs=1e-3)


def check_bad_k(mod) -> None:
    for k in (0, 5):
        with pytest.raises(ValueError):
            mod.route(torch.randn(3, 4), k)


def test_router_picks_top_k_and_renormalises(exercise):
    check_picks_and_weights(exercise("ch09_advanced", "ex9_1_topk_router"))


def test_balanced_routing_has_loss_one_and_collapse_has_loss_e(exercise):
    check_balance_extremes(exercise("ch09_advanced", "ex9_1_topk_router"))


def test_bad_k_is_rejected(exercise):
    check_bad_k(exercise("ch09_advanced", "ex9_1_topk_router"))
