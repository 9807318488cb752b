"""common.presets and common.loader: presets match real configs; every spec resolves or says why not."""

from __future__ import annotations

import json

import pytest
import torch

from common.loader import ModelLoadError, load_config, load_hf_model, resolve_model_path
from common.presets import get_preset, is_preset, preset_names


def test_every_preset_named_in_the_design_exists():
    assert {"llama-3-8b", "llama-3-70b", "mixtral-8x7b", "qwen2.5-7b", "smollm2-135m"} <= set(preset_names())
    assert is_preset("Llama-3-8B") and not is_preset("gpt-5")


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(KeyError, match="llama-3-8b"):
        get_preset("gpt-5")


def test_preset_is_a_fresh_copy():
    a = get_preset("llama-3-8b")
    a["num_hidden_layers"] = 1
    assert get_preset("llama-3-8b")["num_hidden_layers"] == 32


def test_embedded_preset_matches_the_prepared_model(embedded_model_dir):
    real = json.loads((embedded_model_dir / "config.json").read_text())
    preset = get_preset("smollm2-135m")
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "vocab_size", "tie_word_embeddings"):
        assert real[key] == preset[key], key
    # transformers 5 writes rope_theta inside rope_parameters; older versions at the top level
    theta = real.get("rope_theta") or real.get("rope_parameters", {}).get("rope_theta")
    assert theta == preset["rope_theta"]


def test_specs_resolve_to_folders_or_clear_errors(embedded_model_dir, tmp_path):
    assert resolve_model_path(None) == str(embedded_model_dir)
    assert resolve_model_path("smollm2-135m") == str(embedded_model_dir)
    assert resolve_model_path(str(embedded_model_dir / "config.json")) == str(embedded_model_dir)
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_path("./no/such/folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model_path(str(tmp_path / "empty"))


def test_load_config_from_a_preset_and_a_folder(tiny_hf_model):
    _, folder = tiny_hf_model
    assert load_config("llama-3-70b")["num_hidden_layers"] == 80
    assert load_config(str(folder))["hidden_size"] == 64


def test_dummy_load_format_builds_random_weights_with_real_shapes(tiny_hf_model):
    _, folder = tiny_hf_model
    model = load_hf_model(str(folder), load_format="dummy")
    assert model.model.embed_tokens.weight.shape == (256, 64)
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, 256)


def test_unknown_load_format_is_rejected():
    with pytest.raises(ModelLoadError, match="load-format"):
        load_hf_model("smollm2-135m", load_format="bogus")
