"""common.datasets: the truncated ShareGPT file is read record by record; workloads are seeded."""

from __future__ import annotations

import pytest

from common import datasets


def test_truncated_array_keeps_only_complete_records():
    text = '[\n {"id": "a", "x": 1},\n {"id": "b", "x": [1, 2]},\n {"id": "c", "x": "unfini'
    assert [r["id"] for r in datasets.iter_records(text)] == ["a", "b"]
    assert [r["id"] for r in datasets.iter_records('[{"id": "a"}]')] == ["a"]


def test_the_packaged_file_yields_the_documented_record_count():
    with open(datasets._dataset_file(), encoding="utf-8") as f:
        text = f.read()
    assert sum(1 for _ in datasets.iter_records(text)) == 17_671


def test_held_out_records_never_reach_workloads():
    conv = datasets.load_conversations()
    pool_ids = {c.id for c in datasets.workload_pool()}
    held = conv[-datasets.HELD_OUT_RECORDS:]
    assert not pool_ids & {c.id for c in held}


def test_workload_is_seeded_and_filtered_like_vllm(embedded_tokenizer):
    a = datasets.sample_workload(embedded_tokenizer, 20, seed=3)
    b = datasets.sample_workload(embedded_tokenizer, 20, seed=3)
    c = datasets.sample_workload(embedded_tokenizer, 20, seed=4)
    assert a == b and a != c
    for r in a:
        assert 4 <= r.prompt_len <= 1024 and r.output_len >= 4 and r.prompt_len + r.output_len <= 2048
        assert r.prompt_len == len(embedded_tokenizer(r.prompt, add_special_tokens=False)["input_ids"])


def test_output_cap_and_fixed_length(embedded_tokenizer):
    capped = datasets.sample_workload(embedded_tokenizer, 10, seed=0, max_output_len=32)
    assert max(r.output_len for r in capped) <= 32
    fixed = datasets.sample_workload(embedded_tokenizer, 5, seed=0, fixed_output_len=64)
    assert {r.output_len for r in fixed} == {64}


def test_impossible_requests_say_so(embedded_tokenizer):
    with pytest.raises(ValueError, match="at least 1"):
        datasets.sample_workload(embedded_tokenizer, 0)


def test_eval_text_is_fixed_and_long_enough(embedded_tokenizer):
    ids = datasets.eval_token_ids(embedded_tokenizer, 50_000)
    assert len(ids) == 50_000
    assert datasets.eval_text() == datasets.eval_text()
    with pytest.raises(ValueError, match="fewer than"):
        datasets.eval_token_ids(embedded_tokenizer, 10_000_000)
