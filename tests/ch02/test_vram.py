"""The memory calculator (2.3): exact KV/param numbers for published configs, solvers, CLI contract."""

from __future__ import annotations

import pytest

from ch02_gpu import vram
from ch02_gpu.estimate import (
    MemoryRequest,
    estimate,
    max_batch,
    max_context,
    per_gpu_bytes,
    vllm_cpu_kv_capacity,
)
from ch02_gpu.memory import (
    Arch,
    ConfigError,
    bytes_per_weight,
    count_params,
    kv_bytes_per_token,
    kv_bytes_per_token_naive,
)
from common.presets import get_preset
from common.report import parse_json_line


def arch(name: str) -> Arch:
    return Arch.from_config(get_preset(name), name)


def run_cli(capsys, *args: str) -> dict:
    assert vram.main(list(args)) == 0
    return parse_json_line(capsys.readouterr().out)


def test_acceptance_llama3_8b_kv_numbers(capsys):
    out = run_cli(capsys, "--model", "llama-3-8b", "--dtype", "bf16", "--context", "131072")
    assert out["kv_bytes_per_token"] == 131072
    assert out["kv_cache_bytes"] == 17179869184
    for key in ("params", "weights_bytes", "activation_bytes", "overhead_bytes", "total_bytes"):
        assert out[key] > 0
    assert out["total_bytes"] == (out["weights_bytes"] + out["kv_cache_bytes"] + out["activation_bytes"]
                                  + out["overhead_bytes"])


def test_acceptance_llama3_70b_kv_per_token(capsys):
    out = run_cli(capsys, "--model", "llama-3-70b", "--dtype", "bf16", "--json")
    assert out["kv_bytes_per_token"] == 327680


def test_hidden_size_formula_overstates_llama3_8b_kv_by_4x():
    a = arch("llama-3-8b")
    assert kv_bytes_per_token_naive(a, "bf16") == 4 * kv_bytes_per_token(a, "bf16")


@pytest.mark.parametrize("name,params", [
    ("smollm2-135m", 134_515_008), ("llama-3-8b", 8_030_261_248), ("llama-3-70b", 70_553_706_496),
    ("qwen2.5-7b", 7_615_616_512), ("mixtral-8x7b", 46_702_792_704)])
def test_param_counts_match_published_sizes(name, params):
    assert count_params(arch(name)).total == params


def test_moe_counts_all_experts_for_memory_and_active_for_compute():
    p = count_params(arch("mixtral-8x7b"))
    assert p.active == 12_879_925_248  # 2 of 8 experts: the "13B active" of Mixtral's model card
    assert p.total > 3.5 * p.active


def test_int4_scale_overhead_and_16bit_embeddings():
    assert bytes_per_weight("int4", 128) == pytest.approx(0.5 + 2 / 128)
    assert bytes_per_weight("int4", 32, zero_point=True) == pytest.approx(0.5 + 4 / 32)
    e16 = estimate(arch("llama-3-70b"), MemoryRequest(weight_dtype="bf16"))
    e4 = estimate(arch("llama-3-70b"), MemoryRequest(weight_dtype="int4"))
    assert 3.3 < e16.weights_bytes / e4.weights_bytes < 4.0  # embeddings stay 16-bit, scales cost extra


def test_tensor_parallel_splits_weights_and_kv_and_replicates_kv_heads_beyond_their_count():
    a = arch("llama-3-70b")
    e1 = estimate(a, MemoryRequest(context=8192))
    e2 = estimate(a, MemoryRequest(context=8192, tp=2))
    assert e2.kv_cache_bytes == e1.kv_cache_bytes
    assert e2.per_gpu_bytes < 0.55 * e1.per_gpu_bytes
    e16 = estimate(a, MemoryRequest(context=8192, tp=16))  # 8 KV heads on 16 GPUs: each holds one
    assert e16.kv_cache_bytes == 2 * e1.kv_cache_bytes


def test_solvers_return_the_boundary():
    a = arch("llama-3-8b")
    r = MemoryRequest(context=8192)
    cap = 80e9
    b = max_batch(a, r, cap)
    assert per_gpu_bytes(a, r, batch=b) <= cap < per_gpu_bytes(a, r, batch=b + 1)
    c = max_context(a, r, cap)
    assert per_gpu_bytes(a, r, context=c) <= cap < per_gpu_bytes(a, r, context=c + 1)
    assert max_batch(a, r, 1e9) == 0  # weights alone do not fit in 1 GB


def test_vllm_cpu_capacity_matches_the_documented_embedded_numbers():
    a = arch("smollm2-135m")
    assert vllm_cpu_kv_capacity(a, "fp32", 1).tokens == 23_296
    assert vllm_cpu_kv_capacity(a, "bf16", 1).tokens == 46_592


def test_seventy_b_fits_one_80gb_card_only_in_int4(capsys):
    bf16 = run_cli(capsys, "--model", "llama-3-70b", "--dtype", "bf16", "--context", "8192", "--gpu", "h100", "--json")
    int4 = run_cli(capsys, "--model", "llama-3-70b", "--dtype", "int4", "--context", "8192", "--gpu", "h100", "--json")
    tp2 = run_cli(capsys, "--model", "llama-3-70b", "--dtype", "bf16", "--context", "8192", "--tp", "2",
                  "--gpu", "h100", "--gpu-memory-utilization", "0.95", "--json")
    assert not bf16["fits"] and int4["fits"] and tp2["fits"]
    assert int4["vllm_kv_tokens"] > tp2["vllm_kv_tokens"] > 0


def test_config_json_path_works(capsys, tiny_hf_model):
    _, folder = tiny_hf_model
    out = run_cli(capsys, "--model", str(folder / "config.json"), "--dtype", "fp32", "--json")
    assert out["kv_bytes_per_token"] == 2 * 2 * 2 * 16 * 4  # layers x kv_heads x head_dim x fp32, K and V


@pytest.mark.parametrize("args,needle", [
    (["--model", "no-such-model"], "neither a preset"),
    (["--gpu", "voodoo5"], "unknown GPU"),
    (["--gpu-memory-utilization", "1.5"], "(0, 1]")])
def test_bad_input_is_one_sentence(capsys, args, needle):
    with pytest.raises(SystemExit) as exc:
        vram.main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_invalid_config_is_rejected():
    with pytest.raises(ConfigError, match="multiple"):
        Arch.from_config({"hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1,
                          "num_attention_heads": 5, "num_key_value_heads": 2, "vocab_size": 10})
