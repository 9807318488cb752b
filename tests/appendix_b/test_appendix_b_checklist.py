"""Appendix B.3's checklist items (pure functions) and the command's layers."""

from __future__ import annotations

from appendix_b import checklist, items
from common.checklist import FAIL, OK, WARN
from common.report import parse_json_line


def test_software_items():
    assert items.check_torch_build("2.13.0+cpu", None, 0).status == OK
    assert items.check_torch_build("2.13.0+cpu", None, 2).status == FAIL
    assert items.check_min_version("transformers", "4.57.1", (4, 56)).status == OK
    assert items.check_min_version("transformers", None, (4, 56)).status == FAIL
    assert items.check_debug_env({"CUDA_LAUNCH_BLOCKING": "0"}).status == OK


def test_config_and_app_items():
    assert items.check_omp_wait(None, serving=False).status == OK
    assert items.check_omp_wait("passive", serving=True).status == OK
    assert items.check_simd("avx512", "avx2").status == WARN
    assert items.check_simd("avx2", None).status == OK
    assert items.check_prompt_fits(100, 100, 2048).status == OK
    assert items.check_prompt_fits(2048, 1, 2048).status == FAIL
    assert items.check_concurrency(8, 16).status == OK
    assert items.check_streaming(True, True).status == OK


def test_command_runs_the_config_and_app_layers(capsys):
    rc = checklist.main(["--layer", "app", "--prompt-tokens", "3000", "--max-tokens", "10", "--json"])
    payload = parse_json_line(capsys.readouterr().out)
    assert rc == 1 and payload["counts"]["FAIL"] == 1
    assert checklist.main(["--layer", "config", "--serving", "--json"]) in (0, 1)
    names = [c["name"] for c in parse_json_line(capsys.readouterr().out)["checklist"]]
    assert names == ["threads", "omp-wait", "dtype", "simd", "kv-budget", "prefix-cache"]
