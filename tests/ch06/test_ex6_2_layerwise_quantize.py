"""Exercise 6.2: layer-by-layer quantization that streams weights from disk."""

from __future__ import annotations

import torch

from ch06_quantization.checkpoints import load_quantized
from ch06_quantization.gptq import GPTQConfig, gptq_quantize_model
from ch06_quantization.rtn import QuantLinear, QuantSpec


def test_memory_plan_for_llama_70b_is_far_below_the_whole_model(exercise):
    mod = exercise("ch06_quantization", "ex6_2_layerwise_quantize")
    plan = mod.memory_plan("llama-3-70b", calib_tokens=128 * 2048)
    assert 130 < plan.whole_model_fp16_gb < 150
    assert plan.peak_gb < 0.25 * plan.whole_model_fp16_gb  # 29 GB vs 141 GB: fits one 40 GB card
    assert plan.one_layer_fp32_gb > 3  # 80 layers of ~0.86B parameters


def test_streamed_checkpoint_loads_and_matches_in_memory_gptq(exercise, tiny_hf_model, tiny_model, tiny_calib,
                                                               tmp_path):
    mod = exercise("ch06_quantization", "ex6_2_layerwise_quantize")
    _, folder = tiny_hf_model
    cfg = GPTQConfig(QuantSpec(4, "group", 16, symmetric=True), act_order=False)
    rep = mod.quantize_layer_by_layer(str(folder), tmp_path / "q", tiny_calib, cfg)
    assert rep.layers == 2 and len(list((tmp_path / "q").glob("*.safetensors"))) == 3
    streamed = load_quantized(tmp_path / "q")
    assert sum(isinstance(m, QuantLinear) for m in streamed.modules()) == 14
    gptq_quantize_model(tiny_model, tiny_calib, cfg)  # the same algorithm with the model in memory
    ids = torch.tensor([[4, 8, 15, 16, 23, 42]])
    # only the fp16 storage of norms/embedding differs between the two paths
    torch.testing.assert_close(streamed(ids), tiny_model(ids), rtol=2e-2, atol=2e-2)
