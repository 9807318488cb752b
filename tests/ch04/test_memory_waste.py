"""Memory waste: the replay through the BlockManager agrees with closed-form arithmetic, paged beats naive
on a ShareGPT workload, and the context/memory tables match the model config."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from ch04_kvcache.config import ModelConfig
from ch04_kvcache.memory_waste import (
    context_rows,
    kv_utilization,
    longest_context,
    main,
    memory_vs_length,
    sharegpt_lengths,
    simulate,
)
from common.loader import load_config
from common.report import parse_json_line


def test_hand_computed_example():
    # one request, prompt 1, output 2, block 2, max_len 4: holds 1, 2, 3 tokens over three steps
    u = simulate([(1, 2)], block_size=2, max_len=4, max_num_seqs=1)
    assert u.steps == 3 and u.token_slot_steps == 6
    assert u.paged == pytest.approx(6 / 8) and u.naive == pytest.approx(6 / 12) and u.oracle == pytest.approx(6 / 9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), min_size=1, max_size=6), st.integers(1, 8))
def test_block_manager_replay_matches_closed_form(lengths, block_size):
    # all requests live at once: request (p, o) holds p + t tokens at step t = 0..o
    u = simulate(lengths, block_size=block_size, max_len=80, max_num_seqs=len(lengths))
    steps = max(o for _, o in lengths) + 1
    stored = sum(p + t for p, o in lengths for t in range(o + 1))
    paged = sum(math.ceil((p + t) / block_size) * block_size for p, o in lengths for t in range(o + 1))
    naive = sum(80 * (o + 1) for _, o in lengths)
    assert u.steps == steps and u.token_slot_steps == stored
    assert u.paged == pytest.approx(stored / paged) and u.naive == pytest.approx(stored / naive)
    assert u.naive <= u.oracle <= 1 and u.paged <= 1
    if block_size == 1:
        assert u.paged == 1


def test_concurrency_limit_changes_schedule_not_waste_per_token():
    lengths = [(5, 3), (7, 2), (3, 9)]
    serial = simulate(lengths, block_size=4, max_len=16, max_num_seqs=1)
    assert serial.steps == sum(o + 1 for _, o in lengths)
    assert serial.peak_blocks == max(math.ceil((p + o) / 4) for p, o in lengths)


def test_bad_workloads_raise_clear_errors():
    with pytest.raises(ValueError, match="does not fit max_len"):
        simulate([(10, 10)], max_len=16)
    with pytest.raises(ValueError, match="empty"):
        simulate([])
    with pytest.raises(ValueError, match="at least one"):
        simulate([(0, 3)])


def test_paged_utilization_beats_goal_on_sharegpt():
    lengths = sharegpt_lengths(24, seed=0)
    res = kv_utilization(lengths, block_size=16, max_len=2048)
    assert res["paged"] >= 0.96                                  # vLLM's paper: 96.3%
    assert res["naive"] < 0.5 < res["paged"]
    assert res["naive"] < res["oracle"] < res["paged"]


def test_memory_vs_length_measures_the_real_paged_cache():
    cfg = ModelConfig.from_dict(load_config("smollm2-135m"))
    rows = memory_vs_length(cfg, [10, 16, 100, 4096], block_size=16, max_len=2048, measure_up_to=128)
    assert [r["paged_measured"] for r in rows] == ["yes"] * 3 + ["formula"]
    assert rows[3]["naive_fp32_MiB"] is None                         # longer than the naive reservation
    assert rows[0]["paged_fp32_MiB"] == rows[1]["paged_fp32_MiB"] == 16 * 46080 / 2**20
    assert rows[2]["naive_fp32_MiB"] == 2048 * 46080 / 2**20


def test_longest_context_matches_design_numbers():
    cfg = ModelConfig.from_dict(load_config("smollm2-135m"))
    assert cfg.kv_bytes_per_token(4) == 2 * 30 * 3 * 64 * 4
    assert longest_context(cfg, 2**30, 4, block_size=128) == 23_296   # ARCHITECTURE.md §5, vLLM-CPU fp32
    assert longest_context(cfg, 2**30, 2, block_size=128) == 46_592
    rows = {r["model"]: r for r in context_rows(1.0)}
    assert rows["llama-3-8b"]["tokens bf16"] == 8192                   # 128 KiB/token
    assert rows["smollm2-135m"]["tokens fp32"] == 23_296


def test_cli_smoke_ends_with_json(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMIC_REPORTS_DIR", str(tmp_path))
    assert main(["--smoke"]) == 0
    out = capsys.readouterr().out
    data = parse_json_line(out)
    assert data["paged_kv_utilization"] >= 0.96 > data["naive_kv_utilization"]
    assert "hardware" in data and (tmp_path / "ch04" / "kv_memory_vs_length.png").is_file()
    assert "naive (max_len)" in out


def test_cli_rejects_bad_memory(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--smoke", "--memory-gib", "-1"])
    assert exc.value.code == 2 and "--memory-gib" in capsys.readouterr().err
