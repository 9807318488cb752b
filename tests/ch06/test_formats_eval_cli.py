"""Formats table (6.1/6.3), evaluation helpers (6.6), CLIs, headline."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from ch06_quantization.evaluate import agreement, perplexity, tensor_bytes, weight_bytes
from ch06_quantization.formats import measure_errors, round_trip
from ch06_quantization.rtn import QuantSpec, quantize_model_rtn


def test_format_errors_follow_precision():
    torch.manual_seed(0)
    w = {"w": torch.randn(64, 128) * 0.02}
    e = measure_errors(w, ["fp32", "fp16", "bf16", "fp8-e4m3", "fp8-e5m2", "int8", "int4-g64"])
    assert e["fp32"] == 0
    assert e["fp16"] < e["bf16"] < e["fp8-e4m3"] < e["fp8-e5m2"]  # mantissa bits: 10 > 7 > 3 > 2
    assert e["int8"] < e["int4-g64"]


def test_fp8_round_trip_stays_in_range():
    w = torch.randn(16, 16) * 1000
    assert round_trip(w, "fp8-e4m3").abs().max() <= w.abs().max() * 1.0001


def test_weight_bytes_counts_tied_embeddings_once_and_shrinks_when_quantized(tiny_model):
    fp32 = weight_bytes(tiny_model)
    n_params = sum(p.numel() for p in tiny_model.parameters())  # parameters() already de-duplicates
    assert fp32 == n_params * 4
    before = weight_bytes(tiny_model, linears_only=True)
    quantize_model_rtn(tiny_model, QuantSpec(4, "group", 16))
    assert weight_bytes(tiny_model, linears_only=True) < 0.2 * before  # 4 bits + fp16 scale/16 vs 32 bits


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    class Uniform(torch.nn.Module):
        def forward(self, ids):
            return torch.zeros(*ids.shape, 50)

    assert perplexity(Uniform(), torch.randint(0, 50, (3, 10))) == pytest.approx(50, rel=1e-5)


def test_a_model_agrees_with_its_own_greedy_answers(tiny_model):
    from ch06_quantization.evaluate import greedy

    prompts = [[1, 5, 9], [3, 4]]
    refs = [greedy(tiny_model, p, 5, eos=None) for p in prompts]
    assert agreement(tiny_model, prompts, refs) == 1.0


def test_tensor_bytes_sees_through_torchao_subclasses():
    pytest.importorskip("torchao")
    from ch06_quantization.libraries import torchao_int8

    m = torch.nn.Module()
    m.layers = torch.nn.ModuleList([torch.nn.Linear(64, 32, bias=False)])
    torchao_int8(m)
    assert tensor_bytes(m.layers[0].weight) < 64 * 32 * 2  # int8 data + per-row scales, not fp32


def test_every_script_has_help():
    code = ("import importlib, sys, contextlib, io\n"
            "for m in sys.argv[1:]:\n"
            "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "        try:\n"
            "            importlib.import_module('ch06_quantization.' + m).main(['--help'])\n"
            "        except SystemExit as e:\n"
            "            assert e.code == 0, m\n"
            "    assert 'usage' in out.getvalue(), m\n")
    mods = ["compare", "gptq", "awq", "formats", "qat", "kv_quant", "advanced", "libraries", "evaluate", "rtn",
            "qa_scheduling", "cpu_qgemv", "kernel_bench", "engine_quant", "gguf_llama_cpp",
            "solutions.ex6_1_compare_formats",
            "solutions.ex6_2_layerwise_quantize"]
    r = subprocess.run([sys.executable, "-c", code, *mods], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_compare_rejects_an_unknown_method_in_one_sentence():
    r = subprocess.run([sys.executable, "-m", "ch06_quantization.compare", "--methods", "int2 magic"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "unknown method" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_compare_smoke_prints_every_method_and_the_json_keys():
    from common.report import parse_json_line

    r = subprocess.run([sys.executable, "-m", "ch06_quantization.compare", "--smoke"], capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    out = parse_json_line(r.stdout)
    assert {"fp32", "bf16", "int8 per-channel RTN", "int4 g64 GPTQ", "int4 g64 AWQ", "int3 g64 GPTQ"} <= set(out["methods"])
    for row in out["methods"].values():
        assert "status" in row or {"ppl", "ppl_delta_pct", "agreement", "weight_bytes", "tok_s"} <= set(row)
    assert out["hardware"]["cores"] >= 1


@pytest.mark.slow
def test_headline_is_measured_and_shows_gptq_beating_rtn():
    from ch06_quantization.headline import headline

    h = headline(smoke=True)
    assert h.chapter == "ch06" and h.figures["ratio"] < 1 and "GPTQ" in h.text
