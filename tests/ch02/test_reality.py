"""The calculator against real tensors and real memory (2.3, checked against reality, items 2a/2b/2d)."""

from __future__ import annotations

import pytest
import torch

from ch02_gpu.memory import Arch, activation_bytes, count_params, kv_bytes_per_token, weights_bytes
from ch02_gpu.peak_memory import cache_nbytes
from ch02_gpu.reality import cpu_checks, gpu_checks, safetensors_bytes
from common.loader import load_config


@pytest.fixture(scope="module")
def arch(embedded_model_dir) -> Arch:
    return Arch.from_config(load_config(str(embedded_model_dir)), "smollm2-135m")


def test_weight_bytes_equal_the_safetensors_file_and_the_loaded_parameters(arch, embedded_model_dir,
                                                                           embedded_hf_model):
    predicted = weights_bytes(count_params(arch), "fp32")
    assert safetensors_bytes(embedded_model_dir) == predicted
    unique = {p.data_ptr(): p.numel() * p.element_size() for p in embedded_hf_model.parameters()}
    assert sum(unique.values()) == predicted


@pytest.mark.parametrize("batch,tokens", [(1, 7), (3, 16)])
def test_kv_bytes_equal_transformers_cache_after_a_real_forward(arch, embedded_hf_model, batch, tokens):
    from transformers import DynamicCache

    cache = DynamicCache(config=embedded_hf_model.config)
    ids = torch.randint(0, arch.vocab_size, (batch, tokens))
    with torch.inference_mode():
        out = embedded_hf_model(input_ids=ids, past_key_values=cache, use_cache=True)
    assert cache_nbytes(out.past_key_values) == kv_bytes_per_token(arch, "fp32") * batch * tokens


def test_kv_bytes_equal_ch04_caches(arch, embedded_model_dir):
    ch04_cache = pytest.importorskip("ch04_kvcache.kv_cache")
    from ch04_kvcache.config import ModelConfig
    from ch04_kvcache.paged_cache import PagedKVCache

    cfg = ModelConfig.from_pretrained(embedded_model_dir)
    per_token = kv_bytes_per_token(arch, "fp32")
    contiguous = ch04_cache.ContiguousKVCache(cfg, batch_size=2, max_len=96, dtype=torch.float32)
    assert contiguous.nbytes == per_token * 2 * 96
    paged = PagedKVCache(cfg, num_blocks=5, block_size=16, dtype=torch.float32)
    assert paged.bytes_per_block == per_token * 16
    assert paged.nbytes == per_token * 16 * 5
    half = ch04_cache.ContiguousKVCache(cfg, batch_size=1, max_len=10, dtype=torch.bfloat16)
    assert half.nbytes == kv_bytes_per_token(arch, "bf16") * 10


def test_activation_estimate_counts_logits_of_every_token_for_a_plain_forward(arch):
    all_rows = activation_bytes(arch, 1, 512, 4, logits_tokens="all")
    last_row = activation_bytes(arch, 1, 512, 4, logits_tokens="last")
    assert all_rows >= 512 * arch.vocab_size * 4 > last_row


@pytest.mark.slow
def test_peak_memory_of_a_real_cpu_forward_is_within_10_percent(embedded_model_dir):
    checks = {c.quantity.split(", ")[0]: c for c in cpu_checks(str(embedded_model_dir), 1, 256)}
    assert checks["KV cache"].error == 0
    assert abs(checks["weights (resident)"].error) < 0.05
    total = checks["weights + KV + activations"]
    assert abs(total.error) < 0.10, total  # the goal, on the model-dependent footprint
    forward = checks["forward peak (KV + activations"]
    assert abs(forward.error) < 0.10, forward  # live tensors alone: the probe makes RSS track them


@pytest.mark.gpu
def test_gpu_allocator_readings_match_prediction(embedded_model_dir):
    rows = {c.quantity: c for c in gpu_checks(str(embedded_model_dir), 1, 512)}
    assert abs(rows["GPU weights"].error) < 0.02
    assert abs(rows["GPU forward peak"].error) < 0.30
    if "GPU total (nvidia-smi view)" in rows:
        assert rows["GPU total (nvidia-smi view)"].measured > rows["GPU weights"].measured
