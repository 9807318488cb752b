"""GPU specs table and cost ranking (2.6)."""

from __future__ import annotations

import pytest

from ch02_gpu import gpus as gpus_mod
from ch02_gpu import specs
from ch02_gpu.gpus import UnknownGPU, find_gpu, load_gpus
from ch02_gpu.memory import Arch
from ch02_gpu.specs import Workload, rank
from common.presets import get_preset
from common.report import parse_json_line

REQUIRED = ["RTX 3090", "RTX 4090", "RTX 5090", "L4", "A10G", "L40S", "A100 40GB", "A100 80GB", "H100 PCIe",
            "H100 SXM", "H200", "B200", "MI300X"]


def test_table_has_every_card_of_the_issue_with_sources_and_dates():
    table = {g.name: g for g in load_gpus()}
    assert set(REQUIRED) <= set(table)
    for g in table.values():
        assert g.memory_gb > 0 and g.bandwidth_gb_s > 0 and g.bf16_tflops > 0 and g.tdp_w > 0
        assert g.price_usd_per_hour > 0 and g.price_date[:4].isdigit()
        assert len(g.price_source) > 10 and len(g.spec_source) > 10
    assert table["H100 SXM"].bandwidth_gb_s > table["H100 PCIe"].bandwidth_gb_s
    assert table["A100 80GB"].fp8_tflops is None  # Ampere has no FP8 tensor cores


def test_lookup_by_alias_ignores_case_and_punctuation():
    assert find_gpu("h100").name == "H100 SXM"
    assert find_gpu("A100-80GB").name == "A100 80GB"
    with pytest.raises(UnknownGPU):
        find_gpu("voodoo5")


def test_ranking_is_sorted_by_cost_and_70b_bf16_needs_several_consumer_cards():
    a = Arch.from_config(get_preset("llama-3-70b"), "llama-3-70b")
    ranked, too_small = rank(a, Workload(weight_dtype="bf16"), load_gpus())
    costs = [r.usd_per_million for r in ranked]
    assert costs == sorted(costs)
    by_name = {r.gpu.name: r for r in ranked}
    assert "RTX 4090" in too_small or by_name["RTX 4090"].tp == 8
    assert by_name["H200"].tp >= 1 and by_name["A100 80GB"].tp >= 2  # 141 GB of weights


def test_price_override_changes_the_ranking(capsys):
    assert specs.main(["--model", "llama-3-8b", "--json"]) == 0
    base = parse_json_line(capsys.readouterr().out)["ranking"]
    assert specs.main(["--model", "llama-3-8b", "--price", "L4=0.01", "--json"]) == 0
    cheap = parse_json_line(capsys.readouterr().out)["ranking"]
    assert cheap[0]["gpu"] == "L4" and base[0]["gpu"] != "L4"


def test_bad_price_is_one_sentence(capsys):
    with pytest.raises(SystemExit):
        specs.main(["--price", "nonsense"])
    assert "NAME=USD" in capsys.readouterr().err


def test_gpus_cli_prints_the_table(capsys):
    assert gpus_mod.main([]) == 0
    out = capsys.readouterr().out
    assert "MI300X" in out and parse_json_line(out)["gpus"]
