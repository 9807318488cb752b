"""The from-scratch model matches ``transformers`` logits (fp32) and loads configs in both layouts."""

from __future__ import annotations

import pytest
import torch

from ch04_kvcache.config import ModelConfig
from ch04_kvcache.model import LlamaModel

TOL = {"atol": 1e-4, "rtol": 1e-4}


def _ids(vocab: int, b: int, t: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (b, t), generator=torch.Generator().manual_seed(seed))


def test_logits_match_transformers_on_tiny_random_config(tiny_model):
    ours, hf = tiny_model
    ids = _ids(256, 2, 33)
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, **TOL)


def test_logits_match_transformers_on_embedded_model(embedded_model, embedded_hf_model):
    ids = _ids(49152, 1, 48, seed=1)
    with torch.no_grad():
        ours, ref = embedded_model(ids), embedded_hf_model(ids).logits
    torch.testing.assert_close(ours, ref, **TOL)
    assert (ours - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("tie", [True, False])
def test_llama3_rope_scaling_and_untied_embeddings_match_transformers(tiny_llama_config, tmp_path, tie):
    from transformers import LlamaConfig, LlamaForCausalLM

    rope = {"rope_type": "llama3", "rope_theta": 50000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
    kw = {k: v for k, v in tiny_llama_config.items() if k not in ("model_type", "rope_theta")}
    kw["tie_word_embeddings"] = tie
    torch.manual_seed(1)
    hf = LlamaForCausalLM(LlamaConfig(**kw, rope_parameters=rope)).eval()
    hf.save_pretrained(tmp_path / "m")
    ours = LlamaModel.from_pretrained(tmp_path / "m")
    assert ours.config.rope_scaling["rope_type"] == "llama3"
    assert ours.config.rope_theta == 50000.0
    assert (ours.lm_head.weight is ours.embed_tokens.weight) is tie
    ids = _ids(256, 1, 120, seed=2)  # positions well past original_max_position_embeddings
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, **TOL)


def test_config_reads_old_and_new_rope_layouts(tiny_llama_config):
    old = dict(tiny_llama_config, rope_theta=500000.0,
               rope_scaling={"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192})
    new = dict(tiny_llama_config, rope_parameters={"rope_type": "default", "rope_theta": 100000.0})
    new.pop("rope_theta")
    a, b = ModelConfig.from_dict(old), ModelConfig.from_dict(new)
    assert a.rope_theta == 500000.0 and a.rope_scaling["rope_type"] == "llama3"
    assert b.rope_theta == 100000.0 and b.rope_scaling is None
    assert a.group_size == 2 and a.kv_bytes_per_token(2) == 2 * 2 * 2 * 16 * 2


def test_embedded_config_numbers(embedded_model_dir):
    cfg = ModelConfig.from_pretrained(embedded_model_dir)
    assert (cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (30, 9, 3, 64)
    assert cfg.rope_theta == 100000.0 and cfg.tie_word_embeddings


@pytest.mark.parametrize("bad,msg", [({"num_key_value_heads": 3}, "multiple"), ({"hidden_size": 0}, "positive"),
                                     ({"model_type": "gpt2"}, "Llama-family")])
def test_config_rejects_bad_values(tiny_llama_config, bad, msg):
    with pytest.raises(ValueError, match=msg):
        ModelConfig.from_dict(dict(tiny_llama_config, **bad))


def test_dummy_load_format_gives_random_weights_with_preset_shapes():
    m = LlamaModel.from_pretrained("smollm2-135m", load_format="dummy")
    assert m.config.num_layers == 30
    with torch.no_grad():
        assert torch.isfinite(m(_ids(49152, 1, 4))).all()


@pytest.mark.gpu
def test_model_and_paged_generation_on_cuda_match_cpu(tiny_model):
    from ch04_kvcache.generate import generate

    ours, _ = tiny_model
    ids = _ids(256, 1, 20)
    with torch.no_grad():
        cpu = ours(ids)
        gpu = ours.to("cuda")(ids.to("cuda")).cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-3, rtol=1e-3)  # TF32/cuBLAS order differs from CPU
    prompt = ids[0].tolist()
    assert generate(ours, prompt, 8, cache="paged", eos_token_id=None).token_ids == \
        generate(ours, prompt, 8, cache="contiguous", eos_token_id=None).token_ids
