"""Roofline (2.5, 2.2.4): intensity arithmetic, bound classification, the measured run on this CPU."""

from __future__ import annotations

import pytest

from ch02_gpu import roofline
from ch02_gpu.gpus import find_gpu
from ch02_gpu.intensity import expected_experts, step_cost
from ch02_gpu.memory import Arch, count_params
from common.presets import get_preset
from common.report import parse_json_line


def arch(name: str) -> Arch:
    return Arch.from_config(get_preset(name), name)


def test_decode_at_batch_1_reads_every_weight_once_and_is_memory_bound_on_every_gpu():
    a = arch("llama-3-8b")
    c = step_cost(a, batch=1, new_tokens=1, context=1, weight_dtype="bf16")
    p = count_params(a)
    # weights minus the input embedding (a lookup, not a read of the whole table), plus one token of KV
    assert c.weight_bytes == pytest.approx(2 * (p.total - a.vocab_size * a.hidden_size))
    assert c.intensity == pytest.approx(1.0, rel=0.1)  # ~2 FLOPs per 2-byte weight
    h100 = find_gpu("h100")
    assert c.bound_kind(h100.flops("bf16"), h100.bandwidth_bytes_per_s) == "memory"


def test_batching_raises_intensity_and_long_prefill_becomes_compute_bound():
    a = arch("llama-3-8b")
    d1, d64 = (step_cost(a, b, 1, 512) for b in (1, 64))
    assert d64.intensity > 30 * d1.intensity
    h100 = find_gpu("h100")
    pre = step_cost(a, 1, 4096, 4096)
    assert pre.bound_kind(h100.flops("bf16"), h100.bandwidth_bytes_per_s) == "compute"
    assert pre.time_bound(h100.flops("bf16"), h100.bandwidth_bytes_per_s) == pytest.approx(
        pre.flops / h100.flops("bf16"))


def test_moe_decode_reads_only_touched_experts():
    a = arch("mixtral-8x7b")
    assert expected_experts(8, 2, 1) == pytest.approx(2)
    assert 7.9 < expected_experts(8, 2, 64) <= 8
    one, many = step_cost(a, 1, 1, 1), step_cost(a, 64, 1, 1)
    assert one.weight_bytes < 0.4 * many.weight_bytes


def test_attention_flops_grow_with_context():
    a = arch("smollm2-135m")
    assert step_cost(a, 1, 1, 8192).flops > step_cost(a, 1, 1, 16).flops


def test_analytic_mode_on_a_named_card(capsys):
    assert roofline.main(["--model", "llama-3-70b", "--gpu", "a100-80gb", "--batch", "1", "128", "--json"]) == 0
    out = parse_json_line(capsys.readouterr().out)
    assert out["prediction"] == "model-based"
    decode1 = next(r for r in out["rows"] if r["phase"] == "decode" and r["batch"] == 1)
    assert decode1["bound"] == "memory"


def test_measured_smoke_run_writes_the_plot_and_states_mbu(capsys, tmp_path, monkeypatch, tiny_hf_model):
    # the mechanism on a tiny random Llama (the README's numbers come from the embedded model)
    monkeypatch.setenv("LLMIC_REPORTS_DIR", str(tmp_path))
    assert roofline.main(["--smoke", "--json", "--model", str(tiny_hf_model[1])]) == 0
    out = parse_json_line(capsys.readouterr().out)
    assert (tmp_path / "ch02" / "roofline_decode.png").stat().st_size > 1000
    assert out["mbu_batch1"] > 0
    assert out["bottleneck_batch1"] in {"memory-bound", "compute-bound", "overhead-bound"}
    assert [p["batch"] for p in out["points"]] == [1, 2]
    assert out["hardware"]["dtype"] == "fp32"
