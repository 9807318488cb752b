"""Appendix A: the glossary (no duplicates; every glossary term in a chapter README heading resolves,
bilingually) and the framework comparison's smoke run (our engine and transformers only, no vLLM)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from appendix_a import compare, glossary
from appendix_a.frameworks import CITED
from common.paths import REPO_ROOT
from common.report import parse_json_line

NOT_TERMS = {"AMD", "EPYC"}  # vendor and product names in headings, not terms to define


def readme_headings() -> list[str]:
    heads = []
    for readme in sorted(REPO_ROOT.glob("ch*/README.md")) + sorted(REPO_ROOT.glob("appendix_*/README.md")):
        in_code = False
        for line in readme.read_text(encoding="utf-8").splitlines():
            if line.startswith("```"):
                in_code = not in_code
            elif not in_code and line.startswith("#"):
                heads.append(line.lstrip("#").strip())
    return heads


def test_glossary_has_no_duplicate_entries():
    assert glossary.duplicates() == []
    assert glossary.duplicates((*glossary.GLOSSARY, glossary.GLOSSARY[0])) != []
    assert all(t.en and t.zh and t.definition and t.category in glossary.CATEGORIES for t in glossary.GLOSSARY)
    assert len(glossary.CATEGORIES) == 3


def test_every_glossary_term_in_a_readme_heading_resolves():
    heads = readme_headings()
    assert len(heads) > 30
    used = {n for h in heads for n in glossary.terms_in(h)}
    assert {"KV cache", "GPU", "quantization", "speculative decoding", "vLLM"} <= used
    for name in used:
        t = glossary.lookup(name)
        assert t is not None and re.search(r"[\u4e00-\u9fff]", t.zh) or t.zh == t.en, name
    acronyms = {a for h in heads for a in re.findall(r"\b[A-Z][A-Z0-9-]*[A-Z0-9]\b", h)}
    unknown = sorted(a for a in acronyms - NOT_TERMS if glossary.lookup(a) is None)
    assert unknown == [], f"add these heading acronyms to appendix_a/glossary_terms.py: {unknown}"


def test_lookup_by_english_chinese_and_alias(capsys):
    assert glossary.lookup("gqa") is glossary.lookup("分组查询注意力") is glossary.lookup("grouped-query attention")
    assert glossary.main(["--lookup", "TTFT"]) == 0
    assert parse_json_line(capsys.readouterr().out)["terms"][0]["zh"] == "首词元延迟"
    assert glossary.main(["--lookup", "no such thing"]) == 1


@pytest.fixture(scope="module")
def small_model(tmp_path_factory, embedded_model_dir: Path) -> Path:
    """A random 2-layer Llama with the embedded model's tokenizer: the comparison's code paths in seconds."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, vocab_size=49152, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    folder = tmp_path_factory.mktemp("small") / "model"
    LlamaForCausalLM(cfg).eval().save_pretrained(folder, safe_serialization=True)
    for f in embedded_model_dir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")) or f.name == "chat_template.jinja":
            shutil.copy(f, folder / f.name)
    return folder


def test_compare_smoke_runs_ours_and_transformers(small_model, capsys):
    assert compare.main(["--smoke", "--model", str(small_model), "--decode-kernel", "torch"]) == 0
    out = capsys.readouterr().out
    payload = parse_json_line(out)
    assert payload["engine_tok_s"] > 0 and payload["transformers_tok_s"] > 0
    assert payload["vllm_tok_s"] is None and payload["llama_cpp_tok_s"] is None  # smoke never starts them
    assert {c["name"] for c in payload["cited"]} == {f.name for f in CITED}
    assert "cited, not run" in out and "TensorRT-LLM" in out
