"""MoE: router invariants, capacity dropping, loop and grouped routing agree, upcycling keeps the dense output."""

from __future__ import annotations

import pytest
import torch

from ch09_advanced.moe import MoELayer, mixtral_numbers, top_k_route, upcycle_model


def test_router_weights_sum_to_one_and_uniform_loss_is_one():
    torch.manual_seed(0)
    r = top_k_route(torch.randn(64, 8), k=2)
    torch.testing.assert_close(r.weight.sum(-1), torch.ones(64))
    assert r.expert_idx.shape == (64, 2) and r.keep.all()
    uniform = top_k_route(torch.zeros(8, 4) + torch.eye(4).repeat(2, 1) * 5, k=1)
    assert float(uniform.aux_loss) == pytest.approx(1.0, abs=1e-2)
    assert uniform.imbalance(4) == pytest.approx(1.0)


def test_capacity_drops_overflow_in_token_order():
    logits = torch.tensor([[5.0, 0.0]] * 6)  # every token wants expert 0
    r = top_k_route(logits, k=1, capacity_factor=1.0)  # capacity = ceil(6 * 1 / 2) = 3
    assert r.capacity == 3
    assert r.keep.view(-1).tolist() == [True] * 3 + [False] * 3
    assert float(r.weight[3:].abs().sum()) == 0.0


@pytest.mark.parametrize("capacity_factor", [None, 1.0, 0.5])
def test_loop_and_grouped_routing_agree(capacity_factor):
    torch.manual_seed(0)
    layer = MoELayer(16, 32, num_experts=4, top_k=2, capacity_factor=capacity_factor)
    x = torch.randn(40, 16)
    with torch.no_grad():
        r = layer.route(x)
        torch.testing.assert_close(layer.forward_grouped(x, r), layer.forward_loop(x, r))


def test_bad_top_k_is_rejected():
    with pytest.raises(ValueError):
        top_k_route(torch.randn(3, 2), k=3)


def test_upcycled_tiny_model_matches_dense_when_noise_is_zero(tiny_hf_model):
    from ch04_kvcache.model import LlamaModel

    _, folder = tiny_hf_model
    model = LlamaModel.from_pretrained(folder).eval()
    ids = torch.randint(0, 256, (1, 12))
    with torch.no_grad():
        dense = model(ids)
        moes = upcycle_model(model, num_experts=4, top_k=2, noise=0.0)
        sparse = model(ids)
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=1e-4)
    assert all(m.last_routing is not None for m in moes)


def test_mixtral_is_47b_total_13b_active():
    m = mixtral_numbers()
    assert 46 < m["mixtral_params_b"] < 48
    assert 12 < m["mixtral_active_params_b"] < 14


def test_expert_parallel_arithmetic():
    from ch09_advanced.moe import expert_parallel

    one = expert_parallel(100, 8, 2, 8, 1)
    assert one["all_to_all_bytes_per_layer"] == 0 and one["experts_per_gpu"] == 8
    ep2 = expert_parallel(100, 8, 2, 8, 2, bytes_per_el=2)
    assert ep2["all_to_all_bytes_per_layer"] == 2 * 100 * 2 * 8 * 2 * 0.5
    with pytest.raises(ValueError):
        expert_parallel(10, 8, 2, 8, 3)
